"""The libFuzzer target for the C frame decoder, parsers and dispatcher (ASan + UBSan) runs briefly here;
benchmarks/fuzz_c_decoder.py runs it long."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from boardfakes.links import C_BUILD, REPO, require_tool


def load_fuzz_driver():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fuzz_c_decoder", REPO / "benchmarks" / "fuzz_c_decoder.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fuzz_briefly_without_crashes(tmp_path: Path) -> None:
    require_tool("clang")
    report = load_fuzz_driver().run(runs=20000, seconds=None, build_dir=C_BUILD, corpus=tmp_path / "corpus")
    assert report.crashes == 0 and report.exit_code == 0, report.tail
    assert report.executions >= 20000
