"""Errors the CLI turns into one clear line on stderr and a trusted exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the command ran, and its check (agreement, lint, fit) failed
EXIT_BAD_INPUT = 2  # the command could not run on what it was given


class K210Error(Exception):
    """An error with a message meant for the user, not a traceback."""

    exit_code = EXIT_BAD_INPUT


class BadInputError(K210Error):
    """A missing, unreadable, truncated or wrong-format input, or an unknown name."""


class ToolFailure(K210Error):
    """An external tool (nncase, TF, kflash) failed or crashed on an input it accepted."""


class CheckFailed(K210Error):
    """The work was done and its result fails the requested threshold."""

    exit_code = EXIT_CHECK_FAILED
