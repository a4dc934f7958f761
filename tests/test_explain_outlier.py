"""`k210 explain` and `k210 compile --equalize` on a model with one outlier channel (issue 24).

The model: a 1x1 conv ("outlier", ReLU) of 24 channels over an 8x8 RGB image. Channel 0 sees the sum
of all pixels times 1000 (0..3000); the other 23 are 5 x red or 5 x blue (0..5). A 1x1 conv ("mix")
makes two class maps from them, red channels minus blue channels (channel 0 enters both alike, with a
small weight, so it cancels), and a global average gives the two logits. The images are red-ish or
blue-ish, so in float the class is clear. Under the K210's per-tensor uint8 the outlier tensor's step
is 3000 / 255 = 11.8: the 23 narrow channels get at most one step, and the class is lost. Its own
cosine stays ~1 (channel 0 dominates the vector), so explain has to find it by its channel ranges.
Equalisation (outlier -> mix is a conv -> ReLU -> conv pair) scales channel 0 down and restores it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from k210.host.cli import main


def build_model(path):
    import keras

    inp = keras.Input((8, 8, 3), batch_size=1, name="pixels")
    hidden = keras.layers.Conv2D(24, 1, activation="relu", name="outlier")(inp)
    mixed = keras.layers.Conv2D(2, 1, name="mix")(hidden)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="pool")(mixed))
    w1 = np.zeros((1, 1, 3, 24), "float32")
    w1[0, 0, :, 0] = 1000.0
    red = np.arange(1, 24) % 2 == 1
    w1[0, 0, 0, 1:][red] = 5.0
    w1[0, 0, 2, 1:][~red] = 5.0
    w2 = np.zeros((1, 1, 24, 2), "float32")
    w2[0, 0, 0, :] = 1e-3
    w2[0, 0, 1:, 0] = np.where(red, 1.0, -1.0)
    w2[0, 0, 1:, 1] = np.where(red, -1.0, 1.0)
    model.get_layer("outlier").set_weights([w1, np.zeros(24, "float32")])
    model.get_layer("mix").set_weights([w2, np.zeros(2, "float32")])
    model.save(path)
    return path


def build_data(path, count: int = 240):
    """8x8 images (uint8 pixels) whose red and blue differ by 10..50 levels, red ahead in half of them."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, 8, 8, 3)).astype(np.float32)
    base, gap = rng.uniform(60, 200, (count, 8, 8)), rng.uniform(10, 50, (count, 1, 1))
    red = np.arange(count) % 2 == 0
    sign = np.where(red, 1.0, -1.0)[:, None, None]
    x[..., 0], x[..., 2] = base + sign * gap, base - sign * gap
    np.savez(path, x=x.round().astype(np.uint8), y=(~red).astype(np.int64))
    return path


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("outlier")
    return {"model": build_model(folder / "outlier.keras"), "data": build_data(folder / "colours.npz"),
            "dir": folder}


def run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_explain_names_the_outlier_layer_and_equalisation_fixes_it(outlier, capsys):
    keep = outlier["dir"] / "kept"
    code, envelope = run_json(capsys, [
        "explain", str(outlier["model"]), "--data", str(outlier["data"]), "--holdout", "0.5", "--calib", "32",
        "--more-calib", "64", "--limit", "100", "--probe-images", "8", "--no-float", "--keep", str(keep), "--json"])
    r = envelope["result"]
    assert code == 1, r["notes"]  # the baseline loses
    assert r["baseline"]["agreement"] < 0.8
    first = r["layers"][0]
    assert "outlier" in first["name"] and first["channels"] == 24
    assert first["cosine"] > 0.99  # the whole tensor looks fine...
    assert first["channel_cosine_min"] < 0.9  # ...its narrow channels do not
    assert first["channel_spread"] > 100 and first["wiped_channels"] == 23
    assert r["cause"] is not None and r["cause"]["index"] == 0 and "outlier" in r["cause"]["name"]
    assert re.search(r"channel 0 spans [\d.e+]+\.\.[\d.e+]+, 23 of the other 23 span <= [\d.]+: one uint8 step is "
                     r"[\d.]+, so they get <= 1 step", r["cause"]["text"]), r["cause"]["text"]
    assert any(note.startswith("cause: layer 0") for note in r["notes"])
    fixes = {fix["name"]: fix for fix in r["fixes"]}
    equalised = fixes["cross-layer equalisation"]
    assert equalised["agreement"] >= 0.99, equalised
    assert "--equalize" in equalised["compile_command"]
    assert r["transforms_applied"]["pairs"] and r["transforms_applied"]["float_difference"] <= 1e-5
    assert first["channel_spread_after"] < 0.1 * first["channel_spread"]
    best = r["best_build"]
    assert best["agreement"] >= 0.99 and best["compile_command"].startswith("k210 compile ")
    kept = sorted(p.name for p in keep.glob("*.kmodel"))
    assert "baseline.kmodel" in kept and "cross-layer-equalisation.kmodel" in kept
    card = json.loads((keep / "cross-layer-equalisation.kmodel.json").read_text())
    assert card["compile_command"] == equalised["compile_command"]
    assert card["quantisation"]["transforms"]["transforms"] == ["equalize"]
    assert len(card["quantisation"]["calibration"]["sample_sha256"]) == 32
    # the kept build is a kmodel verify takes as it is: the card names the model, the data and the samples to skip
    code, verified = run_json(capsys, ["verify", str(keep / "cross-layer-equalisation.kmodel"), "--json"])
    assert code == 0, verified["result"].get("verdict")
    assert verified["result"]["check_data"]["held_out"] is True


def test_compile_line_rebuilds_the_fix(outlier, capsys, tmp_path):
    """`k210 compile ... --equalize` (the printed line) gives a kmodel that agrees; the card records it."""
    out = tmp_path / "eq.kmodel"
    code, envelope = run_json(capsys, ["compile", str(outlier["model"]), "--data", str(outlier["data"]),
                                       "--holdout", "0.5", "--calib", "32", "--equalize", "--mse-weights",
                                       "--calibrate-method", "l2", "-o", str(out), "--json"])
    assert code == 0
    card = json.loads(out.with_name("eq.kmodel.json").read_text())
    calibration = card["quantisation"]["calibration"]
    assert calibration["method"] == "l2" and calibration["use_mse_quant_w"] is True
    transforms = card["quantisation"]["transforms"]
    assert transforms["transforms"] == ["equalize"] and transforms["pairs"][0]["scale_max"] > 10
    code, envelope = run_json(capsys, ["verify", str(out), "--json"])
    assert code == 0, envelope["result"].get("verdict")


def test_transform_flags_need_uint8(outlier, capsys, tmp_path):
    code = main(["compile", str(outlier["model"]), "--quant", "float", "--equalize", "-o", str(tmp_path / "f.kmodel")])
    assert code == 2 and "act on uint8" in capsys.readouterr().err
