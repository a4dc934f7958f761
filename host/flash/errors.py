"""The flash error the CLI maps to exit code 3 (a board or tool failure)."""

from __future__ import annotations

from k210.core.errors import EXIT_FAILURE, K210Error


class FlashFailed(K210Error):
    """The board was reached (or should have been) and writing its flash did not complete."""

    exit_code = EXIT_FAILURE
