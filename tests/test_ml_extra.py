"""Installed without the `ml` extra (pyproject.toml), a command that needs it says so in one line, exit 2.
Here the extra is installed, so its absence is played by making its modules unimportable."""

from __future__ import annotations

import builtins
import importlib.util
import sys

import pytest
from flashdeploy_support import kmodel_v5, write

from k210.host.cli import main

ML = ("tensorflow", "keras", "nncase", "tflite", "onnx", "matplotlib")


@pytest.fixture
def without_ml(monkeypatch):
    real_import, real_find_spec = builtins.__import__, importlib.util.find_spec

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ML:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    # A module another test imported already would be found in sys.modules: hide those too (restored after).
    for name in [n for n in sys.modules if n.split(".")[0] in ML]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ML else real_find_spec(name, *a))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_command_that_needs_tensorflow_names_the_extra(tmp_path, capsys, without_ml):
    kmodel = write(tmp_path / "m.kmodel", kmodel_v5())
    assert main(["verify", str(kmodel), "--dataset", "random", "--limit", "2"]) == 2
    err = _one_line(capsys)
    assert "needs the ml extra" in err and "pip install 'k210-deploy[ml]'" in err


def test_the_virtual_board_needs_nncase(tmp_path, capsys, without_ml):
    assert main(["board", str(write(tmp_path / "m.kmodel", kmodel_v5()))]) == 2
    assert "ml extra" in _one_line(capsys)


def test_hil_without_nncase_needs_the_extra_or_a_golden_board(tmp_path, capsys, without_ml):
    kmodel = write(tmp_path / "m.kmodel", kmodel_v5())
    assert main(["hil", str(kmodel), "--port", "loop://", "--dataset", "random", "--no-reference"]) == 2
    err = _one_line(capsys)
    assert "ml extra" in err and "--golden-board-cmd" in err


def test_board_side_commands_run_without_it(tmp_path, capsys, without_ml):
    kmodel = str(write(tmp_path / "m.kmodel", kmodel_v5()))
    assert main(["inspect", kmodel]) == 0
    assert main(["flash", kmodel, "--dry-run"]) == 0
    assert main(["deploy", kmodel, "--dry-run"]) == 0
    assert main(["lint", kmodel]) == 0
