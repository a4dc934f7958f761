"""The seed models through `k210 lint`: the X/O MLP lints clean, LeNet's 5x5 convs fall back to the
CPU (and the model does not fit), the course's frozen .pb with its dynamic-batch flatten is fine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from course_graph import build_course_pb

from k210.converters.kpu_rules import NEEDS_PTQ
from k210.host.cli import main
from k210.host.lint import lint_model, lint_path


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    from k210.core.quiet import preload_tensorflow

    preload_tensorflow()
    from keras import Input, Sequential, layers

    from k210.models.zoo import get_model_def

    out = tmp_path_factory.mktemp("seeds")
    paths = {}
    for name, classes in (("xo_mlp", 2), ("lenet5", 10)):
        model = get_model_def(name).build(classes)
        paths[name] = out / f"{name}.keras"
        model.save(paths[name])
    small = Sequential([Input((28, 28, 1)), layers.Conv2D(8, 5, padding="same", activation="relu"),
                        layers.MaxPooling2D(4), layers.Flatten(), layers.Dense(10)])
    paths["conv5_small"] = out / "conv5_small.keras"
    small.save(paths["conv5_small"])
    paths["course_pb"] = build_course_pb(out / "nn_xo.pb")
    return paths


def lint_cli(capsys, *argv) -> tuple[int, str]:
    code = main(["lint", *[str(a) for a in argv]])
    return code, capsys.readouterr().out


def test_xo_mlp_lints_clean_with_dense_layers_as_padded_kpu_convs(seeds, capsys):
    code, out = lint_cli(capsys, seeds["xo_mlp"])
    assert code == 0
    report = lint_path(seeds["xo_mlp"])
    assert report.ok and not report.fallbacks
    dense = [op for op in report.ops if op.op == "FULLY_CONNECTED"]
    assert len(dense) == 3 and all(op.placement.value == "kpu-partial" for op in dense)
    assert all("1x1 KPU conv" in op.reason and "pad" in op.reason and "crop" in op.reason for op in dense)
    assert [f.verdict for f in report.findings if f.kind == "Dropout"] == ["removed", "removed"]
    assert "Keras layers" in out and "TFLite ops" in out and "kpu-partial" in out
    assert "verdict: OK" in out


def test_xo_mlp_as_a_float_kmodel_runs_on_the_cpu_and_says_why(seeds, capsys):
    code, out = lint_cli(capsys, seeds["xo_mlp"], "--quant", "float", "--json")
    data = json.loads(out)["result"]
    assert code == 0 and data["ok"] and data["quant"] == "float"
    dense = [op for op in data["ops"] if op["op"] == "FULLY_CONNECTED"]
    assert dense and all(op["placement"] == "cpu" and op["reason"] == NEEDS_PTQ for op in dense)
    assert any("stackvm (CPU) module" in note for note in data["notes"])
    code, _ = lint_cli(capsys, seeds["xo_mlp"], "--quant", "float", "--strict")
    assert code == 1  # full KPU use was required


def test_lenet_reports_the_5x5_fallback_and_the_fix(seeds, capsys):
    code, out = lint_cli(capsys, seeds["lenet5"])
    report = lint_path(seeds["lenet5"])
    convs = [op for op in report.ops if op.op == "CONV_2D"]
    assert len(convs) == 2
    for conv in convs:
        assert conv.placement.value == "cpu" and conv.reason.startswith("5x5 kernel: the KPU does only 1x1 and 3x3")
        assert conv.fix == "two 3x3 convs (same receptive field) keep it on the KPU"
    assert sum("5x5 kernel" in f for f in report.fallbacks) == 2
    assert [f.verdict for f in report.findings if f.kind == "Conv2D"] == ["cpu", "cpu"]
    assert "two 3x3 convs" in out and "5x5 kernel" in out
    # Its Dense 3136->512 stays a float32 CPU MatMul: 6.4 MB of weights, more than the K210's 6 MiB SRAM.
    dense = next(op for op in report.ops if op.op == "FULLY_CONNECTED")
    assert dense.placement.value == "cpu" and "3136 input features" in dense.reason
    assert any("6 MiB SRAM" in p for p in report.problems)
    assert code == 1
    assert lint_cli(capsys, seeds["lenet5"], "--strict")[0] == 1


def test_strict_fails_on_cpu_fallbacks_only(seeds, capsys):
    code, out = lint_cli(capsys, seeds["conv5_small"])
    assert code == 0 and "CPU fallback" in out
    code, out = lint_cli(capsys, seeds["conv5_small"], "--strict")
    assert code == 1 and "verdict: FAIL (--strict)" in out


def test_course_pb_dynamic_batch_is_a_note_not_a_failure(seeds, capsys):
    code, out = lint_cli(capsys, seeds["course_pb"], "--json")
    data = json.loads(out)["result"]
    assert code == 0 and data["ok"] and not data["problems"]
    assert any("dynamic batch" in note for note in data["notes"])
    assert any("Shape -> StridedSlice -> Pack -> Reshape" in note for note in data["notes"])
    nodes = {item["type"]: item["verdict"] for item in data["findings"]["items"]}
    assert nodes["Shape"] == "folded" and nodes["Pack"] == "folded" and nodes["MatMul"] == "ok"
    assert [op["op"] for op in data["ops"]].count("FULLY_CONNECTED") == 3
    assert {op["placement"] for op in data["ops"] if op["op"] == "FULLY_CONNECTED"} == {"kpu-partial"}


def test_lint_model_takes_a_keras_model_object(seeds):
    import keras

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="elu")])
    report = lint_model(model)
    assert not report.ok
    assert report.findings[0].verdict == "unsupported" and "ELU" in report.findings[0].reason
    assert any("Unsupported tflite opcode: ELU" in p for p in report.problems)


@pytest.mark.slow
def test_xo_mlp_kpu_use_agrees_with_the_compiled_kmodel(seeds):
    """The real compile path (converters.compile, nncase in a child process): k210 module iff lint says KPU."""
    from k210.converters.compile import CompileSpec, compile_tflite
    from k210.converters.kmodel import parse_kmodel
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite

    tflite = convert_to_tflite(detect(seeds["xo_mlp"]))
    calibration = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    for quant in ("uint8", "float"):
        spec = CompileSpec(quant=quant, calibration=calibration if quant == "uint8" else None,
                           input_shape=list(tflite.input_shape))
        info = parse_kmodel(compile_tflite(tflite.data, spec).kmodel)
        report = lint_path(seeds["xo_mlp"], quant=quant)
        on_kpu = any(op.placement.value in ("kpu", "kpu-partial") for op in report.ops)
        assert info.has_kpu_code == on_kpu == (quant == "uint8")


def test_savedmodel_is_converted_then_linted(seeds, tmp_path):
    import keras

    model = keras.models.load_model(seeds["xo_mlp"])
    model.export(str(tmp_path / "saved"), verbose=False)
    report = lint_path(tmp_path / "saved")
    assert report.ok and report.format == "saved_model"
    assert [op.placement.value for op in report.ops if op.op == "FULLY_CONNECTED"] == ["kpu-partial"] * 3


def test_frozen_pb_with_a_wrong_node_name_is_bad_input(seeds, capsys):
    code = main(["lint", str(seeds["course_pb"]), "--input-node", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "input node 'nope' is not in the graph" in err and err.count("\n") == 1
