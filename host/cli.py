"""The `k210` command line: dispatches to one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .commands import COMMANDS
from .errors import EXIT_BAD_INPUT, K210Error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k210",
        description="Train, convert, lint, compile, verify and deploy TensorFlow models on Kendryte K210.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = _command_module(name)
        if module is not None:
            module.add_parser(sub)
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


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ banner is noise for CLI users
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "uses_tensorflow", False):
            from .quiet import preload_tensorflow

            preload_tensorflow()
        return int(args.func(args) or 0)
    except K210Error as exc:
        print(f"k210 {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"k210 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # Disk full, permission denied, a port that vanished: still one line, no traceback.
        print(f"k210 {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
