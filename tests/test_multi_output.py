"""Your own model and data end to end: a two-output 32x32 RGB model calibrated on an image folder,
verified and run on a virtual board with every output compared; the card travels; bad input is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "kmodels-realworld"


def _two_output_model(path: Path, seed: int = 0, box: int = 4) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    scores = keras.layers.Dense(2, activation="softmax", name="scores")(x)
    boxes = keras.layers.Dense(box, name="box")(x)
    keras.Model(inp, [scores, boxes]).save(path)
    return path


def _photo_folder(root: Path) -> Path:
    """Two classes of 16 'photographs' each, of mixed sizes: reddish and bluish noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, channel in (("red", 0), ("blue", 2)):
        (root / label).mkdir(parents=True)
        for i in range(16):
            h, w = (48, 40) if i % 2 else (36, 36)
            pixels = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
            pixels[..., channel] += 120
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    from k210.host.cli import main

    out = tmp_path_factory.mktemp("two")
    keras_path = _two_output_model(out / "two.keras")
    photos = _photo_folder(out / "photos")
    kmodel = out / "two.kmodel"
    assert main(["compile", str(keras_path), "--quant", "uint8", "--data", str(photos), "--calib", "12",
                 "--input-range=-1,1", "--no-lint", "-o", str(kmodel)]) == 0
    return {"dir": out, "keras": keras_path, "photos": photos, "kmodel": kmodel}


def _result(path: Path) -> dict:
    """The figures, from the JSON envelope (or a bare report)."""
    data = json.loads(path.read_text())
    return data["result"] if "result" in data and "schema_version" in data else data


def _one_line(text: str) -> bool:
    return len([line for line in text.strip().splitlines() if line.strip()]) == 1


def test_card_keeps_the_spec_the_data_and_a_card_relative_reference(built):
    card = json.loads(Path(f"{built['kmodel']}.json").read_text())
    spec = card["preprocessing"]["spec"]
    assert (spec["height"], spec["width"], spec["channels"], spec["dtype"]) == (32, 32, 3, "uint8")
    assert spec["input_range"] == [-1.0, 1.0]
    assert card["source"] == {**card["source"], "path": "two.keras", "path_base": "card"}
    # 12 asked for, but only the folder's calibration share (20 % of 32, rounded up) may be used
    calibration = card["quantisation"]["calibration"]
    assert calibration["samples"] == 7 and calibration["holdout"] == 0.8
    assert len(set(calibration["sample_sha256"])) == 7
    assert calibration["data"] == str(built["photos"].resolve())
    assert [o["shape"] for o in card["outputs"]] == [[1, 2], [1, 4]]


def test_inspect_shows_the_spec(built, cli):
    result = cli("inspect", built["kmodel"])
    assert result.code == 0
    assert "preprocessing: 32x32 rgb, resize bilinear, pixels 0..255 -> -1..1" in result.out


def test_verify_compares_both_outputs_and_saves_io(built, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the card's reference and data resolve from anywhere
    report, io = tmp_path / "v.json", tmp_path / "io.npz"
    result = cli("verify", built["kmodel"], "--json-out", report, "--save-io", io, "--workers", "1")
    assert result.code == 0, result.out + result.err
    figures = _result(report)
    # the 7 calibration samples are left out: the check is on the 25 held-out photographs
    assert figures["count"] == 25 and figures["labels"] == ["blue", "red"]
    assert figures["check_data"] == {"inputs": 25, "calibration_samples_excluded": 7, "calibration_recorded": True,
                                     "on_calibration_data": False, "held_out": True}
    assert "on 25 held-out inputs (7 calibration samples left out)" in result.out
    scores, box = figures["outputs"]
    assert scores["shape"] == [2] and box["shape"] == [4]
    assert (scores["kind"], box["kind"]) == ("scores", "values")
    assert "agreement" in scores and "kmodel_accuracy" in scores  # class scores, with labels
    assert "agreement" not in box and box["cosine"] > 0.99  # a box: compared, not classified
    for o in (scores, box):
        assert {"max_abs_error", "mae", "rmse", "l2_relative_error", "cosine", "nse"} <= set(o)
    saved = np.load(io)
    assert saved["inputs_kmodel"].shape == (25, 32, 32, 3) and saved["inputs_kmodel"].dtype == np.uint8
    np.testing.assert_allclose(saved["inputs_reference"], saved["inputs_kmodel"] / np.float32(255) * 2 - 1, atol=1e-6)
    assert saved["reference_output_1"].shape == saved["kmodel_output_1"].shape == (25, 4)
    assert sorted(set(saved["labels"].tolist())) == [0, 1]
    everything = cli("verify", built["kmodel"], "--on-calibration-data", "--workers", "1",
                     "--json-out", tmp_path / "all.json")
    assert _result(tmp_path / "all.json")["count"] == 32
    assert "INCLUDING THE CALIBRATION SAMPLES" in everything.out
    # the figures are the saved outputs' figures
    err = saved["kmodel_output_1"].astype(np.float64) - saved["reference_output_1"]
    assert box["max_abs_error"] == pytest.approx(np.abs(err).max())


def test_hil_on_a_virtual_board_compares_both_outputs(built, cli, tmp_path):
    """CanMV main's run_with_output sends output 0 only: without --outputs that is a FAIL naming output 1."""
    report, io = tmp_path / "hil.json", tmp_path / "hil.npz"
    missing = cli("hil", built["kmodel"], "--virtual", "--upload", "--limit", "12", "--workers", "1",
                  "--json-out", tmp_path / "missing.json")
    assert missing.code == 1 and "output 1: not returned" in missing.err, missing.out + missing.err
    assert _result(tmp_path / "missing.json")["passed"] is False
    result = cli("hil", built["kmodel"], "--virtual", "--upload", "--limit", "12", "--workers", "1", "--outputs", "0",
                 "--json-out", report, "--save-io", io)
    assert result.code == 0, result.out + result.err
    figures = _result(report)
    assert figures["outputs_compared"] == 2 and len(figures["outputs"]) == 2
    scores, box = figures["outputs"]
    assert scores["board_vs_simulator"]["bit_identical"] == 1.0 and "board_vs_reference" in scores
    assert scores["board_vs_simulator"]["images_beyond_count"] == 0
    assert box["checked"] is False and box["not_returned"].startswith("not returned")
    assert "simulator_vs_reference" in box and box["simulator_vs_reference"]["cosine"] > 0.99
    saved = np.load(io)
    assert {"board_output_0", "simulator_output_0", "simulator_output_1", "reference_output_1"} <= set(saved.files)
    assert np.array_equal(saved["board_output_0"], saved["simulator_output_0"])


def test_a_missing_carded_reference_fails_unless_no_reference(built, cli, tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(built["kmodel"], moved / "two.kmodel")
    shutil.copy(f"{built['kmodel']}.json", moved / "two.kmodel.json")
    result = cli("verify", moved / "two.kmodel", "--dataset", "random", "--limit", "4")
    assert result.code == 1 and "names the reference" in result.err and _one_line(result.err)
    result = cli("hil", moved / "two.kmodel", "--virtual", "--upload", "--dataset", "random", "--limit", "4")
    assert result.code == 1 and "--no-reference" in result.err
    result = cli("hil", moved / "two.kmodel", "--virtual", "--upload", "--dataset", "random", "--limit", "4",
                 "--no-reference", "--workers", "1", "--outputs", "0")
    assert result.code == 0, result.out + result.err


def test_bad_data_is_one_line_exit_2_and_writes_nothing(built, cli, tmp_path):
    one_class = tmp_path / "one"
    shutil.copytree(built["photos"] / "red", one_class / "red")
    report = tmp_path / "never.json"
    for args in (["--data", one_class], ["--data", built["photos"], "--color", "grayscale"],
                 ["--data", built["photos"], "--mean", "1,2"], ["--data", tmp_path / "absent.npz"]):
        result = cli("verify", built["kmodel"], *args, "--json-out", report, "--save-io", tmp_path / "never.npz")
        assert result.code == 2, (args, result.err)
        assert _one_line(result.err), result.err
    assert not report.exists() and not (tmp_path / "never.npz").exists()
    kmodel = tmp_path / "never.kmodel"
    for args in (["--color", "grayscale"], ["--data", one_class], ["--std", "0"]):
        result = cli("compile", built["keras"], "--no-lint", "--dataset" if args[0] != "--data" else "--seed",
                     "random" if args[0] != "--data" else "0", *args, "-o", kmodel)
        assert result.code == 2 and _one_line(result.err), (args, result.err)
    assert not kmodel.exists() and not Path(f"{kmodel}.json").exists()


def test_verify_refusals_from_issue_11(built, cli, tmp_path):
    """v3: no simulator; a kmodel nncase cannot run: exit 3; outputs of another shape: exit 2. One line each."""
    other = _two_output_model(tmp_path / "other.keras", box=6)
    result = cli("verify", built["kmodel"], "--reference", other, "--dataset", "random", "--limit", "4")
    assert result.code == 2 and "output shapes differ" in result.err and _one_line(result.err), result.err
    if not REALWORLD.is_dir():
        pytest.skip(f"{REALWORLD} is absent")
    v3 = REALWORLD / "v3_maixpy-scripts_mnist.kmodel"
    result = cli("verify", v3, "--reference", other, "--dataset", "random")
    assert result.code == 2 and "kmodel v3" in result.err and _one_line(result.err), result.err
    import keras

    mnist_like = keras.Sequential([keras.Input((1, 28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    mnist_like.save(tmp_path / "mnist_like.keras")
    illegal = REALWORLD / "v5_nncase-dev-2021-08-18_mnist.kmodel"  # made by an nncase dev build
    result = cli("verify", illegal, "--reference", tmp_path / "mnist_like.keras", "--dataset", "random",
                 "--limit", "2", "--workers", "1")
    assert result.code == 3 and "StackVM illegal instruction" in result.err and _one_line(result.err), result.err


def test_mean_std_reach_nncase_and_tf_alike(built, cli, tmp_path):
    """A uint8 kmodel with --mean/--std: nncase normalises on the board as TF's input is normalised here;
    verifying it with another spec (the flags override the card) visibly breaks the agreement."""
    kmodel = tmp_path / "ms.kmodel"
    assert cli("compile", built["keras"], "--dataset", "random", "--calib", "8", "--mean", "0.5", "--std", "0.25",
               "--no-lint", "-o", kmodel).code == 0
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    # random pixels barely move this untrained box output (a narrow range, so tiny output steps): judge it on NSE
    loose = ("--tolerance", "1:steps=64")
    assert cli("verify", kmodel, "--dataset", "random", "--limit", "16", "--workers", "1", *loose,
               "--json-out", good).code == 0
    wrong = cli("verify", kmodel, "--dataset", "random", "--limit", "16", "--workers", "1", "--mean", "0", "--std", "1",
                *loose, "--json-out", bad)
    assert all(o["nse"] > 0.99 for o in _result(good)["outputs"])
    assert wrong.code == 1 and min(o["nse"] for o in _result(bad)["outputs"]) < 0.5
