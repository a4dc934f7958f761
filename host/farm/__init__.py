"""Boards from a board farm or a hardware map, for `k210 hil` and the pytest plugin.

    boardmap.py      boards.yaml (a hardware map of boards on this host) and the K210_* defaults
    lease.py         labgrid places held for a run, seen from the run (no labgrid import here)
    broker.py        the child process that talks to labgrid's coordinator and holds the places
    localenv.py      targets of a labgrid environment file on this host (--lg-env), no coordinator
    pytest_plugin.py k210_board / k210_hil fixtures (registered as a pytest11 entry point)
"""
