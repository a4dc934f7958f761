"""The flash error the CLI maps to exit code 1."""

from __future__ import annotations

from k210.host.errors import EXIT_CHECK_FAILED, K210Error


class FlashFailed(K210Error):
    """The board was reached (or should have been) and writing its flash did not complete."""

    exit_code = EXIT_CHECK_FAILED
