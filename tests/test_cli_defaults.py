"""Defaults that agree across commands: one name per idea, the same quantisation, the firmware a
kmodel calls for. Read from the parser itself, so a new command is held to the same rules."""

from __future__ import annotations

import argparse

import pytest

from k210.host.cli import build_parser
from k210.host.cliutil import firmware_for


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
