"""Every command: a bad input is one clear line on stderr, exit 2, and no partial output file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def junk(tmp_path) -> dict[str, Path]:
    files = {
        "random.kmodel": os.urandom(256),
        "random.tflite": os.urandom(256),
        "random.pb": os.urandom(256),
        "random.keras": os.urandom(256),
        "random.h5": os.urandom(256),
        "empty.tflite": b"",
        "notes.txt": b"hello",
        "truncated.kmodel": b"LDMK\x05\x00\x00\x00\x20\x00\x00\x00",
        "truncated.tflite": b"\x18\x00\x00\x00TFL3\x00\x00\x0e\x00",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def _assert_one_line_error(result, tmp_path: Path, before: set[str]) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert lines[0].startswith("k210 ")
    leftovers = {p.name for p in tmp_path.iterdir()} - before
    assert not leftovers, f"partial output left behind: {leftovers}"


CASES = [
    ("inspect", "{missing}"),
    ("inspect", "random.kmodel"),
    ("inspect", "truncated.kmodel"),
    ("inspect", "notes.txt"),
    ("convert", "{missing}"),
    ("convert", "random.pb"),
    ("convert", "random.tflite"),
    ("convert", "random.keras"),
    ("convert", "random.h5"),
    ("convert", "notes.txt"),
    ("compile", "empty.tflite"),
    ("compile", "random.tflite"),
    ("compile", "truncated.tflite"),
    ("compile", "random.kmodel"),
    ("freeze", "random.keras"),
    ("freeze", "random.pb"),
    ("lint", "{missing}"),
    ("lint", "random.tflite"),
    ("lint", "notes.txt"),
    ("verify", "{missing}"),
    ("verify", "random.kmodel"),
    ("hil", "{missing}"),
    ("hil", "truncated.kmodel"),
]


@pytest.mark.parametrize(("command", "name"), CASES)
def test_bad_model_files(command, name, junk, tmp_path, cli):
    before = {p.name for p in tmp_path.iterdir()}
    path = tmp_path / "does-not-exist.tflite" if name == "{missing}" else junk[name]
    result = cli(command, path)
    _assert_one_line_error(result, tmp_path, before)


def test_unknown_dataset(tmp_path, cli):
    before = {p.name for p in tmp_path.iterdir()}
    result = cli("train", "xo", "--dataset", "no-such-data", "-o", tmp_path)
    _assert_one_line_error(result, tmp_path, before)


def test_unknown_model_name(tmp_path, cli):
    before = {p.name for p in tmp_path.iterdir()}
    _assert_one_line_error(cli("train", "resnet152", "-o", tmp_path), tmp_path, before)


def test_wrong_output_suffix(tmp_path, cli):
    (tmp_path / "m.tflite").write_bytes(b"x")
    before = {p.name for p in tmp_path.iterdir()}
    _assert_one_line_error(cli("compile", tmp_path / "m.tflite", "-o", tmp_path / "m.bin"), tmp_path, before)


def test_nncase_crash_becomes_a_clear_error(tmp_path):
    """A flatbuffer nncase cannot parse makes it SIGSEGV: the child dies, the CLI reports it."""
    from k210.converters.compile import CompileSpec, compile_tflite
    from k210.core.errors import ToolFailure

    with pytest.raises(ToolFailure, match="nncase crashed"):
        compile_tflite(b"\x18\x00\x00\x00TFL3" + os.urandom(200), CompileSpec(input_shape=[1, 28, 28, 1]))


@pytest.mark.parametrize("name", ["random.kmodel", "truncated.kmodel", "{missing}"])
def test_virtual_board_refuses_a_file_that_is_no_kmodel(name, junk, tmp_path, cli):
    before = {p.name for p in tmp_path.iterdir()}
    path = tmp_path / "nope.kmodel" if name == "{missing}" else junk[name]
    _assert_one_line_error(cli("board", path), tmp_path, before)


@pytest.mark.parametrize("argv", [
    ["flash", "{missing}", "--dry-run"],
    ["flash", "random.kmodel", "--dry-run"],
    ["deploy", "truncated.kmodel", "--dry-run"],
    ["verify", "random.kmodel", "--json-out", "out.txt"],
    ["flash", "--firmware-bin", "notes.txt", "random.kmodel", "--address", "0x300100", "--dry-run"],
])
def test_bad_options_and_files_elsewhere(argv, junk, tmp_path, cli):
    before = {p.name for p in tmp_path.iterdir()}
    names = {**{k: str(v) for k, v in junk.items()}, "{missing}": str(tmp_path / "nope.kmodel")}
    _assert_one_line_error(cli(*[names.get(a, a) for a in argv]), tmp_path, before)
