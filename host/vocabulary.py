"""One vocabulary for every `k210` subcommand, and the means to keep an old spelling working for a release.

The rules (docs/cli.md; tests/test_cli_defaults.py holds every subcommand to them, walking the parser):
- `-o/--output` names the artefact the command makes (a .pb, .tflite, .kmodel, a folder of models); the JSON
  envelope goes to stdout with `--json` and to a file with `--json-out FILE.json`, on every command.
- The kmodel a command works on is its positional KMODEL.
- A wait is `--WHAT-timeout SECONDS`.
- Every option that takes a value says its default in its help; metavars are words people read.
- Every command has a description and examples in its epilog.
An old spelling is a hidden `DeprecatedAlias`: it still works and prints one line on stderr saying the new one.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Sequence

# A value that starts like a negative number: argparse would take it for an option (`--input-range -1,1`).
_NEGATIVE = re.compile(r"^-(\d|\.\d)")


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose, keeps indented lines (examples) and blank lines as written, in descriptions and epilogs."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                out.append(textwrap.fill(" ".join(" ".join(prose).split()), width, initial_indent=indent,
                                         subsequent_indent=indent))
                prose.clear()

        for line in text.splitlines():
            if not line.strip() or line[:1].isspace() or line.rstrip().endswith(":"):  # kept as written
                flush()
                out.append((indent + line).rstrip())
            else:
                prose.append(line)
        flush()
        return "\n".join(out)


class DeprecatedAlias(argparse.Action):
    """An old spelling of `target`: does what it does, after one line on stderr naming the new spelling."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, target: argparse.Action, new: str,
                 **_: object) -> None:
        # an optional positional's alias takes its one value (`--kmodel FILE` for `[KMODEL]`)
        nargs = None if not target.option_strings and target.nargs == "?" else target.nargs
        super().__init__(option_strings, target.dest, nargs=nargs, const=target.const, type=target.type,
                         choices=target.choices, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                         metavar=target.metavar)
        self.target = target
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(deprecation_line(parser.prog, option_string or self.option_strings[0], self.new), file=sys.stderr)
        self.target(parser, namespace, values, option_string)


class DeprecatedOption(argparse._StoreAction):
    """An old option with no new twin of the same meaning (lint's --compiler): stored as before, after one line
    on stderr naming what replaces it."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(deprecation_line(parser.prog, option_string or self.option_strings[0], self.new), file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


class _OptionalPositional(argparse._StoreAction):
    """`[KMODEL]`: argparse stores its default when the word is absent, which would undo the deprecated
    `--kmodel FILE` given instead; a value already there is kept."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is self.default and getattr(namespace, self.dest, None) is not None:
            return
        super().__call__(parser, namespace, values, option_string)


def add_kmodel_positional(parser: argparse.ArgumentParser, help: str, **kwargs) -> argparse.Action:
    """The optional positional KMODEL (deploy, board), with --kmodel FILE as its deprecated spelling."""
    kmodel = parser.add_argument("kmodel", nargs="?", metavar="KMODEL", action=_OptionalPositional, help=help,
                                 **kwargs)
    add_deprecated(parser, ("--kmodel",), kmodel, "the positional KMODEL")
    return kmodel


def deprecation_line(prog: str, old: str, new: str) -> str:
    return f"{prog}: warning: {old} is deprecated, use {new} (the old spelling goes in the next release)"


def add_deprecated(parser: argparse.ArgumentParser, old: Sequence[str], target: argparse.Action,
                   new: str | None = None) -> argparse.Action:
    """Hidden options `old` that act as `target` and say to use `new` (default: target's long option)."""
    if new is None:
        new = next((o for o in target.option_strings if o.startswith("--")), target.metavar or target.dest)
    return parser.add_argument(*old, action=DeprecatedAlias, target=target, new=new)


def json_file(text: str) -> str:
    """argparse type of --json-out: a path ending in .json (checked before any work starts)."""
    if not text.lower().endswith(".json"):
        raise argparse.ArgumentTypeError(f"expected a FILE.json (got '{text}')")
    return text


def takes_dash_values(action: argparse.Action) -> bool:
    """Options whose value may start with '-': numbers and comma lists of numbers (`--input-range -1,1`)."""
    kind = getattr(action.type, "kind", action.type)
    return action.nargs is None and (kind in (int, float) or getattr(action.type, "negative_ok", False))


def rewrite_argv(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """argv as argparse can read it: `--opt -1,1` joined into `--opt=-1,1` where the option takes numbers,
    and, on a parser with `positional_option` set, each bare word passed through that hidden option so that
    positionals keep their order among the options (flash: `a.kmodel --address X b.kmodel --address Y`)."""
    out: list[str] = []
    words = list(args)
    moved = getattr(parser, "positional_option", None)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            out += words[i:]
            break
        action = _option_action(parser, word)
        if action is not None and "=" not in word:
            takes = action.nargs is None or (isinstance(action.nargs, int) and action.nargs > 0)
            if takes and i + 1 < len(words) and _NEGATIVE.match(words[i + 1]) and takes_dash_values(action):
                out.append(f"{word}={words[i + 1]}")
                i += 2
                continue
            out.append(word)
            if takes and i + 1 < len(words):
                out.append(words[i + 1])
                i += 1
        elif moved and not word.startswith("-"):
            out += [moved, word]
        else:
            out.append(word)
        i += 1
    return out


def _option_action(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    if not word.startswith("-") or _NEGATIVE.match(word):
        return None
    name = word.split("=", 1)[0]
    found = parser._option_string_actions.get(name)
    if found is None and name.startswith("--"):  # argparse takes unambiguous prefixes (--dry for --dry-run)
        matches = {a for o, a in parser._option_string_actions.items() if o.startswith(name)}
        found = matches.pop() if len(matches) == 1 else None
    return found
