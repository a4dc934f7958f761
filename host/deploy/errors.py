"""The deploy error the CLI maps to exit code 1."""

from __future__ import annotations

from k210.host.errors import EXIT_CHECK_FAILED, K210Error


class DeployFailed(K210Error):
    """The board was reached (or should have been) and the files are not all on it, verified."""

    exit_code = EXIT_CHECK_FAILED
