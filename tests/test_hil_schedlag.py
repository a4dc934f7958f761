"""The host's own scheduling delay is measured and not counted against the line (issue 23).

On a busy machine the harness is kept off the CPU now and then; a reply that arrived meanwhile is
not lost, and a timer that counted that time as the board's resent frames and resynchronised for
nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from k210.host.hil.ports import open_port
from k210.host.hil.schedlag import SchedulingDelay
from k210.host.hil.session import BoardSession

WATCHED = """
import time
from k210.host.hil.schedlag import host_delay
lag = host_delay()
started = time.monotonic()
print("ready", flush=True)
time.sleep(1.5)
print(lag.stalled(started), lag.stalled(time.monotonic() - 0.2), flush=True)
"""


def test_a_process_kept_off_the_cpu_knows_for_how_long():
    proc = subprocess.Popen([sys.executable, "-c", WATCHED], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGSTOP)  # what a starved machine does to it, only longer and on purpose
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGCONT)
    stalled, lately = map(float, proc.stdout.readline().split())
    proc.wait(timeout=10)
    assert 0.4 <= stalled <= 1.2, stalled
    assert lately < 0.15, lately  # the stall was over a second before: the last 0.2 s were (nearly) clean


class _Stalled:
    """A host that was off the CPU for `seconds` just after `at`."""

    def __init__(self, at: float, seconds: float) -> None:
        self.at, self.seconds, self.total_s = at, seconds, seconds

    def stalled(self, since: float) -> float:
        return self.seconds if since <= self.at else 0.0


def test_a_reply_wait_is_not_overdue_for_the_time_the_host_was_stalled():
    session = BoardSession(open_port("loop://", 1_500_000), connect_timeout=0.3)
    try:
        due = time.monotonic()
        limit = session.timer.rto + session.port.wire_seconds(session._max_reply_bytes())
        session.lag = _Stalled(due + 0.01, 0.4)
        assert not session.overdue(due, due + limit + 0.3)  # 0.3 s late, but the host lost 0.4 s
        assert session.overdue(due, due + limit + 0.5)  # later than the stall explains
        assert session.overdue(due + 0.02, due + 0.02 + limit + 0.3)  # a wait begun after the stall: not excused
        session.lag = _Stalled(due, 0.0)
        assert session.overdue(due, due + limit + 0.01)
    finally:
        session.port.close()


def test_a_stall_that_began_before_the_wait_counts_only_from_its_start():
    lag = SchedulingDelay.__new__(SchedulingDelay)  # no thread: the record of stalls, filled by hand
    import threading
    from collections import deque

    lag._lock, lag.total_s = threading.Lock(), 0.0
    lag._stalls = deque([(10.0, 0.5), (12.0, 0.3), (13.0, 0.2)])  # (woke at, late by)
    assert lag.stalled(9.0) == 1.0
    assert abs(lag.stalled(9.8) - (0.2 + 0.3 + 0.2)) < 1e-9  # the first's part after 9.8, then both later ones
    assert abs(lag.stalled(12.5) - 0.2) < 1e-9
    assert lag.stalled(13.5) == 0.0
