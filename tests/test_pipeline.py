"""The spine: train -> freeze -> convert -> compile -> inspect -> verify, for real, on X/O data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from course_graph import build_course_pb, keras_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def xo(tmp_path_factory) -> dict[str, Path]:
    """Train the seed-000 model once, freeze it and compile it both ways."""
    from k210.host.cli import main

    out = tmp_path_factory.mktemp("xo")
    assert main(["train", "xo", "-o", str(out)]) == 0
    keras_path = out / "xo_mlp.keras"
    assert main(["freeze", str(keras_path)]) == 0
    assert main(["compile", str(keras_path), "--quant", "float", "-o", str(out / "xo_float.kmodel")]) == 0
    assert main(["compile", str(out / "xo_mlp.pb"), "--quant", "uint8", "--calib", "200",
                 "-o", str(out / "xo_uint8.kmodel")]) == 0
    return {"dir": out, "keras": keras_path, "pb": out / "xo_mlp.pb",
            "float": out / "xo_float.kmodel", "uint8": out / "xo_uint8.kmodel"}


def test_train_reports_accuracy_and_saves_history_and_curves(xo):
    meta = json.loads((xo["dir"] / "xo_mlp.meta.json").read_text())
    history = json.loads((xo["dir"] / "xo_mlp.history.json").read_text())
    assert meta["test_accuracy"] >= 0.99, meta["test_accuracy"]
    assert meta["labels"] == ["O", "X"]
    assert len(history["loss"]) == meta["recipe"]["epochs"]
    assert history["loss"][-1] < history["loss"][0]
    assert (xo["dir"] / "xo_mlp.curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_freeze_writes_course_style_graph(xo):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(xo["pb"].read_bytes())
    nodes = {n.name: n for n in graph_def.node}
    assert nodes["input_node"].op == "Placeholder"
    assert nodes["input_node"].attr["shape"].shape.dim[0].size == -1  # batch None
    assert "output_node" in nodes
    assert not [n for n in nodes if "dropout" in n.lower()]
    assert {"Shape", "StridedSlice", "Pack", "Reshape"} <= {n.op for n in graph_def.node}


def test_card_next_to_kmodel(xo):
    card = json.loads(Path(f"{xo['uint8']}.json").read_text())
    assert card["kmodel"]["sha256"] == __import__("hashlib").sha256(xo["uint8"].read_bytes()).hexdigest()
    assert card["source"]["format"] == "frozen_pb"
    assert card["inputs"][0]["dtype"] == "uint8" and card["inputs"][0]["shape"] == [1, 28, 28, 1]
    assert card["outputs"][0]["shape"] == [1, 2]
    assert card["labels"] == ["O", "X"]
    assert card["quantisation"]["calibration"]["samples"] == 200
    assert card["preprocessing"]["input_range"] == [0.0, 1.0]
    assert card["compiler"]["version"] == "1.9.0.20230322"
    assert {"input", "output", "data", "model", "total"} <= set(card["memory"])
    assert card["kmodel"]["kpu_code"] is True


def test_inspect_json(xo, cli):
    result = cli("inspect", xo["uint8"], "--json")
    assert result.code == 0
    info = json.loads(result.out)["result"]
    assert info["version"] == 5
    assert [m["type"] for m in info["modules"]] == ["stackvm", "k210"]
    assert info["inputs"][0] == {"dtype": "uint8", "shape": [1, 28, 28, 1], "size": 784, "location": "input"}
    assert info["loaders"]["maixpy"]["loads"] is False and info["loaders"]["canmv"]["loads"] is True
    assert info["firmware"] == "canmv"  # the firmware a v5 kmodel calls for
    float_info = json.loads(cli("inspect", xo["float"], "--json").out)["result"]
    assert [m["type"] for m in float_info["modules"]] == ["stackvm"]
    assert float_info["inputs"][0]["dtype"] == "float32"


def test_uint8_kmodel_agrees_with_tf_on_1600_images(xo, cli, tmp_path):
    """Issue 2's figure: >= 99.5 % top-1 agreement, accuracy within 0.5 points of float."""
    report = tmp_path / "uint8.json"
    result = cli("verify", xo["uint8"], "--reference", xo["keras"], "--dataset", "xo", "--json-out", report)
    assert result.code == 0, result.err
    figures = json.loads(report.read_text())["result"]
    assert figures["count"] == 1600
    assert figures["agreement"] >= 0.995
    assert abs(figures["kmodel_accuracy"] - figures["reference_accuracy"]) <= 0.005
    assert set(figures) >= {"reference_accuracy", "kmodel_accuracy", "max_abs_error", "rmse", "cosine", "confusion"}
    print(f"\nuint8 X/O kmodel: agreement {figures['agreement']:.4f}, accuracy {figures['kmodel_accuracy']:.4f} "
          f"vs TF {figures['reference_accuracy']:.4f}")


def test_float_kmodel_matches_tf_closely(xo, cli, tmp_path):
    report = tmp_path / "float.json"
    result = cli("verify", xo["float"], "--reference", xo["pb"], "--dataset", "xo", "--limit", "200",
                 "--json-out", report)
    assert result.code == 0, result.err
    figures = json.loads(report.read_text())["result"]
    assert figures["agreement"] == 1.0
    assert figures["max_abs_error"] < 1e-4


def test_verify_exits_1_below_min_agreement(xo, cli):
    """An impossible threshold turns the same run into a failed check."""
    result = cli("verify", xo["uint8"], "--reference", xo["keras"], "--dataset", "xo", "--limit", "64",
                 "--min-agreement", "1.0")
    agreement_perfect = "agreement 1.0000" in result.out
    assert result.code == (0 if agreement_perfect else 1)


def test_course_dynamic_batch_pb_compiles_and_matches(tmp_path, cli, xo):
    """The course's own nn_xo.pb shape: Shape/StridedSlice/Pack/Reshape flatten, batch None."""
    import keras

    weights = keras_weights(keras.models.load_model(xo["keras"], compile=False))
    pb = build_course_pb(tmp_path / "nn_xo.pb", weights=weights)
    kmodel = tmp_path / "nn_xo.kmodel"
    result = cli("compile", pb, "--quant", "float", "-o", kmodel)
    assert result.code == 0, result.err
    assert kmodel.read_bytes()[:8] == b"LDMK\x05\x00\x00\x00"
    assert "dynamic batch fixed to 1" in result.out
    result = cli("verify", kmodel, "--reference", pb, "--dataset", "xo", "--limit", "64")
    assert result.code == 0, result.out + result.err


def test_convert_each_format(tmp_path, cli, xo):
    from k210.converters.tflite_reader import read_tflite

    for source in (xo["keras"], xo["pb"]):
        out = tmp_path / f"{source.suffix[1:]}.tflite"
        assert cli("convert", source, "-o", out).code == 0
        ops = [op.opcode for op in read_tflite(out.read_bytes()).ops]
        assert ops == ["RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"], ops


def test_compile_from_tflite_and_saved_model(tmp_path, cli, xo):
    import keras
    import tensorflow as tf

    model = keras.models.load_model(xo["keras"], compile=False)
    saved = tmp_path / "saved"
    tf.saved_model.save(model, str(saved))
    assert cli("compile", saved, "--quant", "float", "-o", tmp_path / "sm.kmodel").code == 0
    tfl = tmp_path / "m.tflite"
    assert cli("convert", xo["keras"], "-o", tfl).code == 0
    assert cli("compile", tfl, "--quant", "uint8", "--dataset", "xo", "--calib", "16", "-o",
               tmp_path / "t.kmodel").code == 0
    x = np.zeros((1, 28, 28, 1), np.float32)
    assert np.asarray(model(x)).shape == (1, 2)
