"""The exit-code contract: 0 ok, 1 a check failed, 2 bad input, 3 a tool/board/internal failure;
one line on stderr whatever happens; the envelope on stdout with --json, errors included."""

from __future__ import annotations

import errno
import json

import pytest

from k210.core.errors import BadInputError, CheckFailed, ToolFailure
from k210.host.cliutil import PlainProgress, format_table, progress


def _raising(exc: BaseException):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(("exc", "code"), [
    (BadInputError("no such thing"), 2),
    (CheckFailed("agreement 0.5 is below 0.99"), 1),
    (ToolFailure("nncase crashed (SIGSEGV)"), 3),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.kmodel"), 2),
    (PermissionError(errno.EACCES, "Permission denied", "out/"), 2),
    (OSError(errno.ENOSPC, "No space left on device"), 3),
    (TimeoutError("the board did not answer"), 3),
])
def test_errors_map_to_the_table(exc, code, cli, monkeypatch):
    monkeypatch.setattr("k210.host.commands.inspect.run", _raising(exc))
    result = cli("inspect", "whatever.kmodel")
    assert result.code == code
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("k210 inspect: ") and "Traceback" not in result.err


def test_an_unexpected_exception_is_exit_3_with_the_traceback_saved(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("K210_CRASH_DIR", str(tmp_path / "crashes"))
    monkeypatch.setattr("k210.host.commands.inspect.run", _raising(ZeroDivisionError("division by zero")))
    result = cli("inspect", "whatever.kmodel", "--json")
    assert result.code == 3
    line = result.err.strip()
    assert "\n" not in line and "internal error: ZeroDivisionError: division by zero" in line
    assert "please report" in line
    saved = list((tmp_path / "crashes").iterdir())
    assert len(saved) == 1 and str(saved[0]) in line
    assert "Traceback" in saved[0].read_text() and "ZeroDivisionError" in saved[0].read_text()
    envelope = json.loads(result.out)  # --json: the envelope even for a crash
    assert envelope["exit_code"] == 3 and envelope["passed"] is False and "please report" in envelope["error"]


def test_bad_input_with_json_still_prints_an_envelope(cli, tmp_path):
    result = cli("inspect", tmp_path / "none.kmodel", "--json")
    envelope = json.loads(result.out)
    assert result.code == 2 and envelope["exit_code"] == 2 and envelope["result"] is None
    assert envelope["error"].startswith("kmodel not found")


def test_help_lists_the_exit_codes(cli):
    result = cli("--help")
    assert result.code == 0
    for line in ("0  ok", "1  a check failed", "2  bad input", "3  a tool, board or internal failure"):
        assert line in result.out


def test_progress_off_a_terminal_is_plain_lines(monkeypatch, capsys):
    monkeypatch.setenv("K210_PROGRESS_EVERY", "0")
    bar = progress(3, "simulating", unit="img")  # pytest's stderr is no terminal
    assert isinstance(bar, PlainProgress)
    with bar:
        for _ in range(3):
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("simulating: 1/3 img (33%)")
    assert lines[-1].startswith("simulating: 3/3 img (100%)") and lines[-1].endswith("done")
    assert "\r" not in "".join(lines)


def test_plain_progress_is_quiet_between_intervals(capsys):
    bar = PlainProgress(1000, "board", "img", every=3600)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    assert capsys.readouterr().err == ""  # a short job says nothing; its result says the rest


def test_tables_fit_100_columns():
    rows = [(1, "dense_1", "FULLY_CONNECTED", "kpu-partial", "a long reason " * 12)]
    text = format_table(("#", "name", "op", "where", "reason"), rows)
    assert max(map(len, text.splitlines())) <= 100
    assert "".join(text.split()).count("alongreason") == 12  # wrapped, not cut


def test_fit_width_wraps_text_at_spaces_and_keeps_paths_whole():
    from k210.host.cliutil import fit_width

    path = "/tmp/" + "x" * 120 + ".kmodel"
    text = fit_width(f"short line\n  link: {'12.5 images/s, ' * 12}done\n{path}")
    lines = text.splitlines()
    assert lines[0] == "short line" and path in lines  # a path longer than the width stays one piece
    assert all(len(line) <= 100 for line in lines if line != path)
    assert all(line.startswith("    ") for line in lines[2:-1])  # continuations hang under their line
