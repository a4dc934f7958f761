"""The `k210` command line: dispatches to one module per subcommand, and owns the exit codes."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import stat
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from k210.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, K210Error
from k210.core.extras import missing_ml_module, needs_ml_line
from k210.core.quiet import VERBOSE_ENV

from .commands import COMMANDS
from .numeric_flags import bound_numeric_flags
from .vocabulary import HelpFormatter, rewrite_argv

EPILOG = """exit codes (every command):
  0  ok: it did what was asked, and its check (if any) held
  1  a check failed: agreement below --min-agreement, a lint problem, a plan that does not fit
  2  bad input: a missing, unreadable or wrong-format file, an unknown name, clashing options
  3  a tool, board or internal failure: nncase crashed, a board stopped answering, a bug (please report)
--json prints one JSON envelope on stdout (schema: host/envelope.schema.json), errors included; --json-out FILE.json
writes it to a file. -o is the file a command makes; the kmodel is the positional KMODEL; waits are
--WHAT-timeout SECONDS. Shell completion: k210 completion bash|zsh (docs/cli.md)."""

# OSErrors that are about the paths the user gave, not about the machine or the board.
_USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EROFS,
                errno.ENAMETOOLONG}


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (`k210 CMD: error: ...`) and exit 2, like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        # `--input-range -1,1` as argparse can read it, and flash's positionals in their order (host/vocabulary.py)
        words = rewrite_argv(self, sys.argv[1:] if args is None else args)
        return super().parse_known_args(words, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="k210",
        description="Train, convert, lint, compile, verify and deploy TensorFlow models on Kendryte K210.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = _command_module(name)
        if module is not None:
            module.add_parser(sub)
    for command in sub.choices.values():  # one switch for third-party log lines, on every command
        command.formatter_class = HelpFormatter  # prose wrapped, examples kept as written
        if not any("--verbose" in action.option_strings for action in command._actions):
            command.add_argument("--verbose", action="store_true",
                                 help="show third-party libraries' log lines and warnings (TensorFlow, absl, "
                                      "TFLite) on stderr; by default they are kept off it")
    bound_numeric_flags(parser)
    return parser


def _command_module(name: str):
    try:
        return importlib.import_module(f"k210.host.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"k210.host.commands.{name}":
            return None  # command not built yet in this checkout
        raise


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"k210-deploy {version('k210-deploy')}"
    except Exception:
        return "k210-deploy (not installed)"


def crash_dir() -> Path:
    """Where tracebacks of unexpected errors go: $K210_CRASH_DIR, else k210-deploy-crashes-<uid> in the temp dir
    (one per user: another user cannot have made it, or plant links in it)."""
    import tempfile

    return Path(os.environ.get("K210_CRASH_DIR") or Path(tempfile.gettempdir()) / f"k210-deploy-crashes-{os.getuid()}")


def _private_dir(folder: Path) -> Path | None:
    """`folder`, made 0700 if missing; None unless it is a real directory of this user that nobody else may
    write to (checked with lstat: a symlink planted in its place is not followed)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return folder


def _save_traceback(command: str, argv: Sequence[str] | None) -> Path | None:
    folder = _private_dir(crash_dir())
    if folder is None:
        return None
    text = (f"k210 {' '.join(argv if argv is not None else sys.argv[1:])}\n{_version()}\n\n"
            + traceback.format_exc())
    stem = f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for n in range(100):
        path = folder / (f"{stem}.txt" if n == 0 else f"{stem}-{n}.txt")
        try:  # a new file only: never through a link, never over a file that is there
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        except OSError:
            return None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
        except OSError:
            return None
        return path
    return None


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    print(f"k210 {args.command}: {message}", file=sys.stderr)
    if getattr(args, "json", False) is True and not getattr(args, "emitted", False):
        from .envelope import build_envelope, to_json

        print(to_json(build_envelope(args.command, None, exit_code=code, error=message.removeprefix("error: "))))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ banner is noise for CLI users
    try:
        if getattr(args, "uses_tensorflow", False):
            from k210.core.quiet import preload_tensorflow

            preload_tensorflow()
        return int(args.func(args) or 0)
    except K210Error as exc:
        return _fail(args, f"error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        print(f"k210 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # A path that is not there or not allowed is the user's to fix (2); disk full, a serial port
        # that vanished or timed out is the machine's or the board's (3). Either way one line.
        code = EXIT_BAD_INPUT if exc.errno in _USER_ERRNOS else EXIT_FAILURE
        return _fail(args, f"error: {exc}", code)
    except Exception as exc:  # a bug: one line, the traceback kept for the report
        missing = missing_ml_module(exc)
        if missing:  # installed without the ml extra: a setup to fix, not a bug
            return _fail(args, f"error: {needs_ml_line(missing)}", EXIT_BAD_INPUT)
        saved = _save_traceback(args.command, argv)
        where = f"the traceback is in {saved}" if saved else "the traceback could not be saved"
        what = " ".join(str(exc).split())[:200] or "(no message)"
        return _fail(args, f"internal error: {type(exc).__name__}: {what}; please report it, {where}",
                     EXIT_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
