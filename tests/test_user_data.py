"""The user's own data (image folders, arrays, random) and the one preprocessing spec, without TF or nncase."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from k210.converters.preprocess import Overrides, Preprocess, image_geometry, spec_for_model
from k210.core.errors import BadInputError
from k210.host.inputdata import DataRequest, load_inputs
from k210.host.metrics import compare, is_class_scores
from k210.models.arrays import load_arrays
from k210.models.image_folder import load_image_folder

RGB32 = Preprocess(32, 32, 3)


def _image(path: Path, size: tuple[int, int], colour: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(path)


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i in range(3):
        _image(root / "cats" / f"c{i}.png", (40, 30), (200, 10 * i, 0))
        _image(root / "dogs" / f"d{i}.jpg", (64, 64), (0, 10 * i, 200))
    (root / "dogs" / "notes.txt").write_text("not an image: skipped, as Keras does")
    return root


# --- image folders ------------------------------------------------------------------------------


def test_class_folders_are_labels_in_sorted_order_and_images_are_resized(labelled: Path) -> None:
    folder = load_image_folder(labelled, RGB32)
    assert folder.class_names == ("cats", "dogs")
    assert folder.pixels.shape == (6, 32, 32, 3) and folder.pixels.dtype == np.uint8
    assert folder.labels is not None and folder.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # a flat colour survives the resize: red cats, blue dogs
    assert folder.pixels[0, ..., 0].mean() == 200 and folder.pixels[3, ..., 2].mean() == 200


def test_flat_folder_is_unlabelled_and_grayscale_when_the_model_is(tmp_path: Path) -> None:
    for i in range(4):
        _image(tmp_path / f"{i}.png", (28, 28), (10 * i, 10 * i, 10 * i))
    folder = load_image_folder(tmp_path, Preprocess(28, 28, 1))
    assert folder.labels is None and folder.class_names == ()
    assert folder.pixels.shape == (4, 28, 28, 1)
    assert folder.pixels[:, 0, 0, 0].tolist() == [0, 10, 20, 30]


@pytest.mark.parametrize("case, message", [
    ("one_class", "one class folder"),
    ("unreadable", r"cannot read image cats/broken\.png"),
    ("empty", "holds no images"),
    ("mixed_layout", "both images and subfolders"),
    ("empty_class", "class folder .* holds no images"),
])
def test_bad_folders_are_one_line(tmp_path: Path, labelled: Path, case: str, message: str) -> None:
    root = {"one_class": tmp_path / "one", "empty": tmp_path / "empty"}.get(case, labelled)
    root.mkdir(exist_ok=True)
    if case == "one_class":
        _image(root / "only" / "a.png", (8, 8), (1, 2, 3))
    elif case == "unreadable":
        (labelled / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif case == "mixed_layout":
        _image(labelled / "stray.png", (8, 8), (1, 2, 3))
    elif case == "empty_class":
        (labelled / "zebras").mkdir()
    with pytest.raises(BadInputError, match=message) as err:
        load_image_folder(root, RGB32)
    assert "\n" not in str(err.value)


def test_mixed_sizes_are_refused_when_resizing_is_off(labelled: Path) -> None:
    with pytest.raises(BadInputError, match="mixed sizes"):
        load_image_folder(labelled, Preprocess(30, 40, 3, resize="none"))


# --- arrays ---------------------------------------------------------------------------------------


def test_arrays_npz_with_labels_and_npy_without(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([0, 1, 2, 1, 0]))
    np.save(tmp_path / "b.npy", x)
    a, b = load_arrays(tmp_path / "a.npz"), load_arrays(tmp_path / "b.npy")
    assert a.are_pixels and a.y is not None and a.y.tolist() == [0, 1, 2, 1, 0]
    assert b.y is None and np.array_equal(b.x, x)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((3, 4), np.int64)}, "x is int64; expected uint8 pixels or float32"),
    ({"images": np.zeros((3, 4), np.uint8)}, "no array 'x'"),
    ({"x": np.zeros((3, 4), np.uint8), "y": np.zeros(2, np.int64)}, "y has shape"),
    ({"x": np.zeros((0, 4), np.uint8)}, "N >= 1"),
    ({"x": np.full((2, 4), np.nan, np.float32)}, "NaN"),
    ({"x": np.zeros(4, np.uint8)}, r"expected \[N, \.\.\.\]"),
])
def test_bad_arrays_are_one_line(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BadInputError, match=message):
        load_arrays(tmp_path / "bad.npz")


def test_pickled_arrays_are_not_read(tmp_path: Path) -> None:
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadInputError, match="pickled"):
        load_arrays(tmp_path / "objects.npy")


def test_arrays_of_the_wrong_shape_or_float_for_a_uint8_kmodel(tmp_path: Path) -> None:
    np.savez(tmp_path / "small.npz", x=np.zeros((2, 16, 16, 3), np.uint8))
    np.savez(tmp_path / "float.npz", x=np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(BadInputError, match="arrays are not resized"):
        load_inputs(DataRequest(data=str(tmp_path / "small.npz")), RGB32, [1, 32, 32, 3])
    uint8 = Preprocess(32, 32, 3, dtype="uint8")
    with pytest.raises(BadInputError, match="takes uint8 pixels"):
        load_inputs(DataRequest(data=str(tmp_path / "float.npz")), uint8, [1, 32, 32, 3])
    floats = load_inputs(DataRequest(data=str(tmp_path / "float.npz")), RGB32, [1, 32, 32, 3])
    assert floats.reference is floats.kmodel and floats.labels is None


# --- the spec ----------------------------------------------------------------------------------------


def test_spec_maps_pixels_to_range_then_mean_std_and_layout() -> None:
    pixels = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=3)
    spec = Preprocess(1, 3, 3, input_range=(-1.0, 1.0), mean=(0.0, 1.0, 0.0), std=(1.0, 1.0, 2.0), layout="NCHW")
    x = spec.to_float(pixels)
    assert x.shape == (1, 3, 1, 3) and x.dtype == np.float32
    ranged = np.array([-1.0, 51 / 255 * 2 - 1, 1.0], np.float32)
    np.testing.assert_allclose(x[0, 0, 0], ranged, rtol=1e-6)
    np.testing.assert_allclose(x[0, 1, 0], ranged - 1.0, rtol=1e-6)
    np.testing.assert_allclose(x[0, 2, 0], ranged / 2, rtol=1e-6)
    assert spec.to_kmodel(pixels).dtype == np.float32
    raw = Preprocess(1, 3, 3, dtype="uint8").to_kmodel(pixels)
    assert raw.dtype == np.uint8 and np.array_equal(raw, pixels)
    # the seeds' x / 255, exactly
    seeds = Preprocess(28, 28, 1).to_float(np.arange(784, dtype=np.int64).reshape(1, 28, 28).astype(np.uint8))
    assert np.array_equal(seeds[..., 0], np.arange(784).reshape(1, 28, 28).astype(np.uint8) / np.float32(255.0))


def test_spec_round_trips_through_the_card() -> None:
    spec = Preprocess(96, 128, 3, input_range=(-1, 1), mean=(0.5,), std=(0.25,), dtype="uint8", resize="nearest")
    assert Preprocess.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("shape, geometry", [
    ([1, 32, 32, 3], (32, 32, 3, "NHWC")), ([1, 3, 224, 224], (224, 224, 3, "NCHW")),
    ([1, 28, 28], (28, 28, 1, "NHWC")), ([1, 784], (28, 28, 1, "NHWC")), ([1, 10], (1, 10, 1, "NHWC")),
])
def test_geometry_of_model_inputs(shape: list[int], geometry: tuple) -> None:
    assert image_geometry(shape) == geometry


@pytest.mark.parametrize("card, overrides, message", [
    ({"height": 28, "width": 28, "channels": 1}, None, "contradicts the model input"),
    ({"height": 32, "width": 32, "channels": 3, "dtype": "uint8"}, None, "sends uint8 but the kmodel takes float32"),
    (None, Overrides(color="grayscale"), "--color grayscale contradicts"),
    (None, Overrides(mean=(1.0, 2.0)), "--mean has 2 values"),
    (None, Overrides(std=(0.0,)), "--std values must be positive"),
    (None, Overrides(input_range=(1.0, 1.0)), "input range 1,1 is empty"),
])
def test_a_spec_that_contradicts_the_model_is_one_line(card, overrides, message) -> None:
    with pytest.raises(BadInputError, match=message):
        spec_for_model([1, 32, 32, 3], dtype="float32", card=card, overrides=overrides)


def test_flags_override_the_card() -> None:
    card = Preprocess(32, 32, 3, input_range=(0, 1)).to_dict()
    spec = spec_for_model([1, 32, 32, 3], card=card, overrides=Overrides(input_range=(-1.0, 1.0)))
    assert spec.input_range == (-1.0, 1.0)


# --- the sources together -----------------------------------------------------------------------------


def test_random_is_seeded_and_calibration_draws_other_inputs() -> None:
    spec = Preprocess(32, 32, 3, input_range=(-1.0, 1.0))
    a = load_inputs(DataRequest("random", limit=50, seed=3), spec, [1, 32, 32, 3])
    b = load_inputs(DataRequest("random", limit=50, seed=3), spec, [1, 32, 32, 3])
    calib = load_inputs(DataRequest("random", limit=50, seed=3), spec, [1, 32, 32, 3], purpose="calibration")
    assert np.array_equal(a.kmodel, b.kmodel) and not np.array_equal(a.kmodel, calib.kmodel)
    assert a.labels is None and a.reference.min() >= -1.0 and a.reference.max() <= 1.0
    assert a.reference.min() < -0.95 and a.reference.max() > 0.95  # uniform over the input range


def test_named_sets_that_do_not_fit_say_what_to_use_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    from k210.models import datasets

    def tiny(path, seed):  # a registered set of 28x28 grayscale images, as the seeds' are
        x = np.random.default_rng(seed).integers(0, 256, (6, 28, 28), dtype=np.uint8)
        y = np.array([0, 1, 0, 1, 0, 1])
        return datasets.Dataset("tiny", x, y, x, y, ("a", "b"), "test")

    monkeypatch.setitem(datasets._REGISTRY, "tiny", (tiny, "six 28x28 images"))
    with pytest.raises(BadInputError, match="do not fit .* --data DIR"):
        load_inputs(DataRequest("tiny", limit=4), RGB32, [1, 32, 32, 3])
    mlp = load_inputs(DataRequest("tiny", limit=4), Preprocess(28, 28, 1), [1, 784])
    assert mlp.reference.shape == (4, 784) and mlp.labels is not None


def test_folder_feeds_tf_and_kmodel_the_same_pixels(labelled: Path) -> None:
    spec = Preprocess(32, 32, 3, dtype="uint8", input_range=(-1.0, 1.0))
    inputs = load_inputs(DataRequest(data=str(labelled)), spec, [1, 32, 32, 3])
    assert inputs.kmodel.dtype == np.uint8 and inputs.class_names == ["cats", "dogs"]
    np.testing.assert_allclose(inputs.reference, inputs.kmodel / np.float32(255.0) * 2 - 1, atol=1e-6)


# --- metrics -------------------------------------------------------------------------------------------


def test_metrics_per_output_nse_and_class_scores() -> None:
    ref = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    assert compare(ref, ref)["nse"] == 1.0
    shifted = compare(ref, ref + 1.0, class_scores=False)
    assert "agreement" not in shifted and shifted["mae"] == 1.0
    assert shifted["nse"] == pytest.approx(1 - 6 / 17.5)
    probabilities = np.array([[0.2, 0.8], [0.5, 0.5]])
    assert is_class_scores([2], None, probabilities)
    assert not is_class_scores([4], None, np.array([[3.0, -1.0, 2.0, 9.0]]))  # a box, not scores
    assert is_class_scores([1, 10], 10) and not is_class_scores([4], 10)
    with pytest.raises(BadInputError, match="output shapes differ"):
        compare(ref, ref[:, :2])


def test_board_config_follows_the_card() -> None:
    from k210.host.sidecars import board_config

    spec = Preprocess(224, 224, 3, input_range=(-1.0, 1.0), dtype="uint8")
    config = board_config({"preprocessing": {"spec": spec.to_dict()}})
    assert config["max_input"] == 150528 and config["preprocessing"]["input_range"] == [-1.0, 1.0]
    assert board_config({"preprocessing": {"input_range": [0, 1]}}) == {}  # an older card: nothing to say


def test_a_limited_folder_check_draws_from_every_class(labelled: Path) -> None:
    inputs = load_inputs(DataRequest(data=str(labelled), limit=4, seed=1), RGB32, [1, 32, 32, 3])
    assert inputs.labels is not None and len(inputs) == 4 and set(inputs.labels.tolist()) == {0, 1}
