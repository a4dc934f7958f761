"""`k210 completion bash|zsh`: the shell completion script for every subcommand and option (made by shtab)."""

from __future__ import annotations

import argparse

from ..cliutil import add_json_arg, finish

SHELLS = ("bash", "zsh")
EPILOG = """examples:
  k210 completion bash > ~/.local/share/bash-completion/completions/k210
  k210 completion zsh > ~/.zfunc/_k210            # with fpath+=(~/.zfunc) before compinit in ~/.zshrc
  eval "$(k210 completion bash)"                  # this shell only"""

# Metavars whose values are paths: the shell offers files (or folders) there.
_FILE_WORDS = ("FILE", "MODEL", "KMODEL", "PATH")


def add_parser(sub) -> None:
    p = sub.add_parser("completion", help="print the shell completion script (bash or zsh)",
                       description="Prints a script that completes k210's subcommands, options, choices and file "
                                   "arguments in bash or zsh; see docs/cli.md for where to put it.",
                       epilog=EPILOG)
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from ..cli import build_parser

    parser = build_parser()
    _complete_paths(parser, shtab.FILE, shtab.DIRECTORY)
    script = shtab.complete(parser, shell=args.shell)
    return finish(args, {"shell": args.shell, "script": script}, text=script.rstrip("\n"))


def _complete_paths(parser: argparse.ArgumentParser, files: dict, folders: dict) -> None:
    """Options and positionals that take a path complete with file names (DIR: folder names)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _complete_paths(command, files, folders)
            continue
        words = set(str(action.metavar or "").replace(".", " ").replace("|", " ").split())
        if "DIR" in words:
            action.complete = folders  # type: ignore[attr-defined]
        elif words & set(_FILE_WORDS) or str(action.metavar or "").startswith("FILE."):
            action.complete = files  # type: ignore[attr-defined]
