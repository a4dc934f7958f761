"""Defaults that agree across commands: one name per idea, the same quantisation, the firmware a
kmodel calls for. Read from the parser itself, so a new command is held to the same rules."""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
import shlex

import pytest

from k210.host.cli import build_parser
from k210.host.cliutil import firmware_for
from k210.host.vocabulary import DeprecatedAlias, DeprecatedOption


def _commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return dict(action.choices)


def _visible_options(sub: argparse.ArgumentParser) -> set[str]:
    return {o for a in sub._actions if a.help != argparse.SUPPRESS for o in a.option_strings}


def test_one_name_per_idea():
    for name, sub in _commands().items():
        visible = _visible_options(sub)
        assert not visible & {"--runner", "--compiler"}, f"k210 {name}: the firmware option is --firmware"
        assert not visible & {"--input-name", "--output-name"}, f"k210 {name}: nodes are --input-node/--output-node"
        if "--json" in visible:
            json_action = next(a for a in sub._actions if "--json" in a.option_strings)
            assert json_action.nargs == 0, f"k210 {name}: --json is a flag (files go to -o/--report)"


def test_firmware_kinds_are_one_option():
    commands = _commands()
    for name in ("lint", "board", "hil", "flash", "deploy"):
        assert "--firmware" in _visible_options(commands[name]), name
    flash = commands["flash"]
    assert "--firmware-bin" in _visible_options(flash)  # the image has its own name


def test_compile_and_lint_assume_the_same_quantisation():
    commands = _commands()
    defaults = {name: next(a.default for a in commands[name]._actions if a.dest == "quant")
                for name in ("compile", "lint")}
    assert defaults == {"compile": "uint8", "lint": "uint8"}


def test_train_help_lists_the_zoo(cli):
    from k210.models.zoo import ZOO

    result = cli("train", "--help")
    assert result.code == 0
    help_text = " ".join(result.out.split())
    assert all(name in help_text for name in ZOO)


@pytest.mark.parametrize(("given", "version", "card", "choices", "expected"), [
    (None, 5, None, ("canmv", "maixpy", "c"), "canmv"),
    (None, 4, None, ("canmv", "maixpy", "c"), "maixpy"),
    (None, 3, None, ("canmv", "maixpy"), "maixpy"),
    (None, None, None, ("canmv", "maixpy", "c"), "canmv"),
    ("c", 4, None, ("canmv", "maixpy", "c"), "c"),
    (None, None, {"kmodel": {"version": 4, "loaded_by": ["maixpy", "canmv", "sdk"]}}, ("canmv", "maixpy", "c"),
     "maixpy"),
    (None, None, {"kmodel": {"version": 5, "loaded_by": ["sdk"]}}, ("canmv", "maixpy", "c"), "c"),
    (None, 5, {"firmware": "c"}, ("canmv", "maixpy", "c"), "c"),
])
def test_the_firmware_follows_the_kmodel_and_its_card(given, version, card, choices, expected):
    assert firmware_for(given, kmodel_version=version, card=card, choices=choices) == expected


# ---- one vocabulary (host/vocabulary.py, docs/cli.md), held over every subcommand the parser has ----

# Words a metavar may be made of (upper case; lower-case parts such as `json` in FILE.json or `pty` are literals).
METAVAR_WORDS = {
    "FILE", "DIR", "PATH", "N", "SECONDS", "MS", "FRACTION", "COSINE", "BYTES", "KBPS", "BAUD", "ADDR", "NAME",
    "URL", "PORT", "HOST", "CMD", "MODEL", "KMODEL", "SPEC", "LOW", "HIGH", "LO", "HI", "OUTPUT", "KIND", "KEY",
    "PRESET", "JSON", "GLOB", "TAG", "VALUE",
}
# Hidden options that are no spelling of anything: the board's parent watch, flash's ordered positionals.
INTERNAL = {"--exit-with-parent", "--_kmodel"}
SAMPLES = {"firmware": "canmv", "json_out": "x.json"}  # a value each old spelling takes
TIMEOUT = re.compile(r"^--[a-z]+(-[a-z]+)*-timeout$")


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, argparse._HelpAction | argparse._VersionAction)


def _visible(sub: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in sub._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def _hidden(sub: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in sub._actions if a.help == argparse.SUPPRESS]


def _help(sub: argparse.ArgumentParser, action: argparse.Action) -> str:
    return " ".join(sub._get_formatter()._expand_help(action).split())


def _name(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else str(action.metavar or action.dest)


def _parse(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(argv), err.getvalue()
        except SystemExit:
            return None, err.getvalue()


def _positionals(sub: argparse.ArgumentParser) -> list[str]:
    """A word for each required positional, so that an option can be parsed alone."""
    return [a.choices[0] if a.choices else "x" for a in sub._actions
            if not a.option_strings and a.nargs is None]


def test_every_command_has_a_description_and_examples_that_parse():
    for name, sub in _commands().items():
        assert sub.description and len(sub.description) > 40, f"k210 {name}: no description"
        epilog = sub.epilog or ""
        assert "examples:" in epilog, f"k210 {name}: no 'examples:' in its help epilog"
        examples = [line.split(" #")[0].strip() for line in epilog.split("examples:", 1)[1].splitlines()
                    if line.strip().startswith(f"k210 {name}")]
        assert examples, f"k210 {name}: its examples should start with 'k210 {name}'"
        for example in examples:
            words = list(itertools.takewhile(lambda w: w not in (">", ">>", "|", "&&", ";"), shlex.split(example)))
            args, err = _parse(words[1:])
            assert args is not None, f"k210 {name}: example does not parse: {example}: {err}"
            assert "deprecated" not in err, f"k210 {name}: example uses an old spelling: {example}"


def test_every_option_shows_its_default():
    for name, sub in _commands().items():
        for action in _visible(sub):
            if not _takes_value(action) or (not action.option_strings and action.nargs is None):
                continue  # flags; required positionals have no default
            text = _help(sub, action)
            assert "default" in text or (action.default == [] and "repeatable" in text), \
                f"k210 {name} {_name(action)}: its help should say its default: {text!r}"
            default = action.default
            if default not in (None, [], "", argparse.SUPPRESS):
                forms = {str(default)} | ({f"{default:g}"} if isinstance(default, int | float) else set())
                assert any(form in text for form in forms), \
                    f"k210 {name} {_name(action)}: default {default!r} not in its help: {text!r}"


def test_metavars_are_words_people_read():
    for name, sub in _commands().items():
        for action in _visible(sub):
            if not _takes_value(action) or isinstance(action, argparse._SubParsersAction):
                continue
            metavar = action.metavar
            if metavar is None:
                assert action.choices, f"k210 {name} {_name(action)}: give it a metavar (argparse would show " \
                                       f"{action.dest.upper()})"
                continue
            assert isinstance(metavar, str) and "_" not in metavar, f"k210 {name} {_name(action)}: {metavar}"
            if metavar.startswith("{"):
                continue  # a choice list
            words = {w for w in re.findall(r"[A-Za-z]+", metavar) if w.isupper()}
            assert words and words <= METAVAR_WORDS, \
                f"k210 {name} {_name(action)}: metavar {metavar} uses {sorted(words - METAVAR_WORDS)}"


def test_timeouts_are_named_what_timeout_seconds():
    for name, sub in _commands().items():
        for action in _visible(sub):
            options = [o for o in action.option_strings if o.startswith("--")]
            waits = [o for o in options if "timeout" in o or o in ("--patience", "--wait")]
            if waits or action.metavar == "SECONDS":
                assert waits and all(TIMEOUT.match(o) for o in waits), \
                    f"k210 {name} {options}: a wait is --WHAT-timeout SECONDS"
                assert action.metavar == "SECONDS", f"k210 {name} {options}: metavar SECONDS"
                assert getattr(action.type, "kind", action.type) is float, f"k210 {name} {options}: seconds"


def test_o_is_the_artefact_and_the_json_copy_is_json_out():
    for name, sub in _commands().items():
        by_option = {o: a for a in _visible(sub) for o in a.option_strings}
        json_out = by_option.get("--json-out")
        assert "--json" in by_option and json_out is not None, f"k210 {name}: --json and --json-out FILE.json"
        assert json_out.metavar == "FILE.json"
        output = by_option.get("-o")
        if output is not None:
            assert output.option_strings == ["-o", "--output"], f"k210 {name}: -o is -o/--output"
            assert output.metavar != "FILE.json" and "json" not in _help(sub, output).lower(), \
                f"k210 {name}: -o names the artefact the command makes, not a JSON copy"
        assert "--output" in by_option or "-o" not in {o for a in sub._actions for o in a.option_strings} or \
            isinstance(next(a for a in sub._actions if "-o" in a.option_strings), DeprecatedAlias)


def test_the_kmodel_is_positional():
    for name, sub in _commands().items():
        kmodels = [a for a in _visible(sub) if a.metavar == "KMODEL" or a.dest == "kmodel"
                   or "--kmodel" in a.option_strings]
        for action in kmodels:
            assert not action.option_strings and action.metavar == "KMODEL", \
                f"k210 {name}: the kmodel is the positional KMODEL, not {action.option_strings}"
        assert not any("--kmodel" in a.option_strings for a in _visible(sub)), f"k210 {name}: --kmodel is visible"
    for name in ("inspect", "verify", "hil", "flash", "deploy", "board"):
        assert any(a.metavar == "KMODEL" for a in _visible(_commands()[name])), name


def test_every_hidden_option_is_a_deprecated_spelling_that_works_and_warns():
    checked = 0
    for name, sub in _commands().items():
        for action in _hidden(sub):
            option = action.option_strings[0]
            if option in INTERNAL:
                continue
            assert isinstance(action, DeprecatedAlias | DeprecatedOption), \
                f"k210 {name} {option}: a hidden option is an old spelling (host/vocabulary.py add_deprecated)"
            if not isinstance(action, DeprecatedAlias):
                continue
            value = action.choices[0] if action.choices else SAMPLES.get(action.dest, "3")
            old, err = _parse([name, *_positionals(sub), option, value])
            assert old is not None, f"k210 {name} {option} {value}: {err}"
            assert f"{option} is deprecated, use {action.new}" in err, f"k210 {name} {option}: no deprecation line"
            assert len(err.strip().splitlines()) == 1
            target = action.target
            new_words = [target.option_strings[0], value] if target.option_strings else [value]
            if target.option_strings and target.option_strings[0] in INTERNAL:
                new_words = [value]  # flash: the positional KMODEL reaches it
            new, err = _parse([name, *_positionals(sub), *new_words])
            assert new is not None and "deprecated" not in err, f"k210 {name} {new_words}: {err}"
            assert getattr(old, action.dest) == getattr(new, action.dest), f"k210 {name} {option} != {new_words}"
            checked += 1
    assert checked >= 10  # -o x3, --out, --kmodel x3, --timeout, --patience, --method, --runner x2, --input-name...


def test_negative_numbers_are_values():
    for name, sub in _commands().items():
        options = {o for a in _visible(sub) for o in a.option_strings}
        if "--input-range" not in options:
            continue
        args, err = _parse([name, *_positionals(sub), "--input-range", "-1,1", "--mean", "-0.5,0,0.5"])
        assert args is not None, f"k210 {name} --input-range -1,1: {err}"
        assert (args.input_range, args.mean) == ((-1.0, 1.0), (-0.5, 0.0, 0.5))


def test_flash_keeps_each_address_with_its_kmodel():
    args, _ = _parse(["flash", "--dry-run", "a.kmodel", "--address", "0x300000", "b.kmodel", "--address",
                      "0x500000", "--json"])
    assert args.kmodels == [["a.kmodel", "0x300000"], ["b.kmodel", "0x500000"]] and args.dry_run and args.json
    args, err = _parse(["flash", "--address", "0x300000", "a.kmodel"])
    assert args is None and "--address must follow the KMODEL" in err
