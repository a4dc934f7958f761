"""`k210 explain` on a tiny model that loses accuracy by construction, and on its harmless twin.

The lossy model: a 3x3 ReLU conv ("signal", values ~0..3, class 1 ahead by ~0.5) and a 1x1 conv
("wide", 3000 x pixel, both channels equal) joined by a residual ADD, averaged, then logits =
[g0 - g1, g1 - g0]. The wide branch cancels exactly in the logits, so in float the class depends on
the signal alone; in uint8 the ADD's one scale (a step of ~12) wipes the signal out. So the loss
must show first at the logits layer, the ADD must be named as joining branches of very different
ranges, and the float kmodel (no quantisation) must agree fully. The twin (wide branch scaled by 1)
must show no bad layer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from k210.converters import quant_explain as qx
from k210.host.cli import main


def build_model(path, wide_scale: float):
    import keras

    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 1), batch_size=1, name="pixels")
    signal = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="signal")(inp)
    wide = keras.layers.Conv2D(2, 1, name="wide")(inp)
    joined = keras.layers.Add(name="residual")([signal, wide])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(joined)
    model = keras.Model(inp, keras.layers.Dense(2, name="logits")(pooled))
    # Channel 1's bias gives class 1 a clear margin (~0.5) in float, so the twin's uint8 noise cannot flip it.
    model.get_layer("signal").set_weights([rng.normal(0, 1, (3, 3, 1, 2)).astype("float32"),
                                           np.array([0.0, 0.5], "float32")])
    model.get_layer("wide").set_weights([np.full((1, 1, 1, 2), wide_scale, "float32"), np.zeros(2, "float32")])
    model.get_layer("logits").set_weights([np.array([[1, -1], [-1, 1]], "float32"), np.zeros(2, "float32")])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    return {"lossy": build_model(folder / "lossy.keras", 3000.0), "fine": build_model(folder / "fine.keras", 1.0),
            "dir": folder}


def run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_lossy_model_names_the_first_bad_layer_and_scores_fixes(models, capsys):
    report_dir = models["dir"] / "report"
    code, envelope = run_json(capsys, ["explain", str(models["lossy"]), "--dataset", "random", "--calib", "32",
                                       "--limit", "40", "--probe-images", "4", "--report", str(report_dir), "--json"])
    assert code == 1 and envelope["exit_code"] == 1 and envelope["command"] == "explain"
    r = envelope["result"]
    layers = r["layers"]
    ops = [row["op"] for row in layers]
    assert ops == ["CONV_2D", "CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    assert all(row["probed"] for row in layers)  # 5 layers: one probe build measures them all
    # The wide branch dominates everything up to the pooling, so those layers look fine...
    assert all(row["cosine"] >= 0.98 for row in layers[:4])
    # ...and the loss shows where the wide branch cancels: the logits.
    assert r["first_bad"]["index"] == 4 and r["first_bad"]["op"] == "FULLY_CONNECTED"
    assert r["first_bad"]["cosine"] < 0.5
    assert layers[2]["runs_on"] == "KPU"  # nncase lowers the residual ADD onto the KPU
    assert layers[3]["runs_on"] == "CPU"  # the global average pool stays on the CPU
    assert sorted(layers[2]["branch_peaks"])[-1] > 100 * sorted(layers[2]["branch_peaks"])[0]
    assert any("residual" in note and "very different ranges" in note for note in r["notes"])
    assert r["import_cosine"] > 0.9999  # nncase's float import is exact: the loss is quantisation
    assert r["baseline"]["agreement"] < 0.9
    fixes = {fix["name"]: fix for fix in r["fixes"]}
    assert {"calibration method l2", "calibration method kld_m0", "float32 input (no uint8 input step)"} <= set(fixes)
    assert any(name.startswith("128 calibration samples") for name in fixes)
    for fix in fixes.values():
        assert 0.0 <= fix["agreement"] <= 1.0
        assert fix["agreement_change"] == pytest.approx(fix["agreement"] - r["baseline"]["agreement"])
    float_fix = fixes["float kmodel (no PTQ: CPU only, no KPU)"]
    assert float_fix["agreement"] == 1.0 and not float_fix["kpu_code"]
    assert (report_dir / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((report_dir / "explain.json").read_text())["result"]["first_bad"]["index"] == 4


def test_model_whose_branches_match_has_no_bad_layer(models, capsys):
    code, envelope = run_json(capsys, ["explain", str(models["fine"]), "--dataset", "random", "--calib", "32",
                                       "--limit", "40", "--probe-images", "4", "--no-fixes", "--json"])
    r = envelope["result"]
    assert code == 0, r["notes"]
    assert r["first_bad"] is None and r["fixes"] == []
    assert min(row["cosine"] for row in r["layers"]) >= 0.98
    assert r["baseline"]["agreement"] >= 0.99
    assert not any("very different ranges" in note for note in r["notes"])


@pytest.mark.parametrize("extra, message", [
    (["--probes", "1"], "--probes must be at least 2"),
    (["--calibrate-method", "best"], "invalid choice: 'best'"),
    (["--min-cosine", "2"], "--min-cosine"),
])
def test_bad_options_are_one_line_exit_2(models, capsys, extra, message):
    assert exit_code(["explain", str(models["fine"]), "--dataset", "random", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def exit_code(argv: list[str]) -> int:
    """main's code, also when argparse refuses an option before main runs the command."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_no_data_and_a_kmodel_are_refused(models, tmp_path, capsys):
    assert exit_code(["explain", str(models["fine"])]) == 2
    assert "which data?" in capsys.readouterr().err
    kmodel = tmp_path / "m.kmodel"
    kmodel.write_bytes(b"LDMK\x05\x00\x00\x00" + bytes(64))
    assert exit_code(["explain", str(kmodel), "--dataset", "random"]) == 2
    assert "needs the float model" in capsys.readouterr().err


def test_nncase_quant_error_lines_are_parsed():
    log = ("4.5. Summarize accumulated quant error for layer output...\nlayer name: add/binary\ncosine: 0.732488\n"
           "layer name: conv2d_1/conv\ncosine: -nan\n5. Optimize target dependent after quantization...\n")
    parsed = qx.parse_quant_error(log)
    assert parsed[0] == ("add/binary", 0.732488)
    assert parsed[1][0] == "conv2d_1/conv" and np.isnan(parsed[1][1])


@pytest.mark.parametrize("node, owner", [
    ("add/binary", "add"),
    ("add/binary/concat/quantize", "add"),
    ("depthwise_conv2d_7_0", "depthwise_conv2d_7"),
    ("conv2d_10/conv", "conv2d_10"),
    ("m/conv2d_1/Relu;m/conv2d_1/convolution/conv/kpu_download", "m/conv2d_1/Relu;m/conv2d_1/convolution"),
    ("output_F", None),
])
def test_nncase_node_names_map_to_tflite_tensors(node, owner):
    names = {"add", "depthwise_conv2d_7", "conv2d_1", "conv2d_10", "m/conv2d_1/Relu;m/conv2d_1/convolution"}
    assert qx.owner_tensor(node, names) == owner


def test_probe_graph_outputs_the_chosen_tensors(models):
    """with_outputs keeps the computation: TFLite gives the same values for the probed tensors."""
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite

    tflite = convert_to_tflite(detect(models["lossy"])).data
    graph = qx.graph_layers(tflite)
    chosen = [graph.layers[0].tensor, graph.layers[2].tensor]
    probe = qx.with_outputs(tflite, chosen)
    x = np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)
    full = qx.tflite_tensors(tflite, x, chosen)
    probe_graph = qx.graph_layers(probe)
    assert [layer.opcode for layer in probe_graph.layers] == ["CONV_2D", "CONV_2D", "ADD"]  # pool and logits gone
    got = qx.tflite_tensors(probe, x, probe_graph.output_tensors)
    for want, tensor in zip(chosen, probe_graph.output_tensors):
        np.testing.assert_allclose(got[tensor], full[want], rtol=1e-6)


def test_more_layers_than_probes_are_probed_in_rounds(models, capsys):
    """--probes 2 on a 5-layer model: checkpoints first, then the window (the picker that spreads them)."""
    code, envelope = run_json(capsys, ["explain", str(models["lossy"]), "--dataset", "random", "--calib", "16",
                                       "--limit", "16", "--probe-images", "2", "--probes", "2", "--no-fixes",
                                       "--json"])
    r = envelope["result"]
    probed = [row["index"] for row in r["layers"] if row["probed"]]
    assert probed[0] == 0 and probed[-1] == 4 and len(probed) >= 3
    assert r["first_bad"]["index"] == 4
