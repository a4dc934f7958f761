"""Errors the CLI turns into one clear line on stderr and a trusted exit code.

The exit-code table (README, `k210 --help`):
  0  ok: the command did what it was asked, and its check (if it makes one) held
  1  a check failed: agreement below the minimum, a lint problem, a plan that does not fit
  2  bad input: a missing, unreadable or wrong-format file, an unknown name, options that clash
  3  a tool, board or internal failure: nncase crashed, a board stopped answering, a bug
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the command ran, and its check (agreement, lint, fit) failed
EXIT_BAD_INPUT = 2  # the command could not run on what it was given
EXIT_FAILURE = 3  # a tool (nncase, TF, kflash), a board or this program failed on input it accepted

EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_CHECK_FAILED: "a check failed",
    EXIT_BAD_INPUT: "bad input",
    EXIT_FAILURE: "a tool, board or internal failure",
}


class K210Error(Exception):
    """An error with a message meant for the user, not a traceback."""

    exit_code = EXIT_BAD_INPUT


class BadInputError(K210Error):
    """A missing, unreadable, truncated or wrong-format input, or an unknown name."""


class ToolFailure(K210Error):
    """An external tool (nncase, TF, kflash) or a board failed or crashed on an input it accepted."""

    exit_code = EXIT_FAILURE


class CheckFailed(K210Error):
    """The work was done and its result fails the requested threshold."""

    exit_code = EXIT_CHECK_FAILED
