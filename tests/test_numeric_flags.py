"""Every numeric option of every command: a bad number is one line on stderr and exit 2, no traceback.

The options are found by walking the parser, so a new option is covered the day it is added. The bad
values come from each option's declared range (host/numeric_flags.py): below it, above it, its open
end, plus what is bad for any number (text, empty, nan, inf, a negative for a non-negative option).
"""

from __future__ import annotations

import argparse

import pytest

from k210.host.cli import build_parser
from k210.host.numeric_flags import numeric_actions

NOT_A_NUMBER = ("abc", "", "1,5", "nan", "NaN", "inf", "-inf", "1e999", "0x10")


def _bad_values(action: argparse.Action) -> list[str]:
    kind, limits = action.type.kind, action.type.limits
    bad = list(NOT_A_NUMBER)
    if kind is int:
        bad += ["1.5", "1e3"]
    low = limits.low
    if low >= 0:
        bad.append("-1")
    if limits.low_open:
        bad.append(str(int(low)) if low == int(low) else repr(low))
    elif kind is int:
        bad.append(str(int(low) - 1))
    else:
        bad.append(repr(low - 1e-3))
    if limits.high is not None:
        bad.append(str(int(limits.high) + 1) if kind is int else repr(limits.high * 1.001 + 1e-3))
    return bad


def _positionals(parser: argparse.ArgumentParser, command: str) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return ["x" for a in sub._actions if not a.option_strings and a.nargs != 0 and a.required]


PARSER = build_parser()  # built once: main() builds the same one for every run
CASES = [(command, action.option_strings[-1], value, _positionals(PARSER, command))
         for command, action in numeric_actions(PARSER) for value in _bad_values(action)]


def test_every_numeric_flag_is_checked():
    found = numeric_actions(PARSER)
    assert len(found) >= 30 and all(hasattr(a.type, "limits") for _, a in found)
    assert {"board", "hil", "flash", "deploy", "train", "compile", "verify"} <= {c for c, _ in found}


def _one_line_exit_2(code: int, err: str, command: str, option: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"k210 {command}: error: argument {option}"), lines[0]


@pytest.mark.parametrize("command", sorted({c for c, *_ in CASES}))
def test_bad_numbers_are_one_line_exit_2(command, capsys):
    cases = [case for case in CASES if case[0] == command]
    for _, option, value, positionals in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            PARSER.parse_args([command, f"{option}={value}", *positionals])
        _one_line_exit_2(int(stopped.value.code), capsys.readouterr().err, command, option)


@pytest.mark.parametrize("command", sorted({c for c, *_ in CASES}))
def test_through_main(command, cli):
    """The same, end to end through `k210` (one case per command: main adds nothing numbers could trip)."""
    _, option, value, positionals = next(case for case in CASES if case[0] == command and case[2] == "nan")
    r = cli(command, f"{option}={value}", *positionals)
    _one_line_exit_2(r.code, r.err, command, option)


def test_good_numbers_still_parse():
    parser = build_parser()
    args = parser.parse_args(["hil", "m.kmodel", "--baud", "115200", "--silence-timeout", "0", "--limit", "3",
                              "--min-agreement", "1", "--connect-timeout", "0.5"])
    assert (args.baud, args.patience, args.limit, args.min_agreement, args.connect_timeout) == (115200, 0, 3, 1, 0.5)
    assert parser.parse_args(["board", "--fault-seed", "4294967295"]).fault_seed == 2**32 - 1


def test_board_port_out_of_range_is_one_line(cli):
    for port in ("70000", "socket://127.0.0.1:70000", "socket://127.0.0.1:-1", "socket://127.0.0.1:x"):
        r = cli("board", "--port", port)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "--port" in r.err, r.err
