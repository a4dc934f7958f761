"""The procedural X/O generator: deterministic, balanced, varied, and learnable."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from k210.models import xo_glyphs

SMALL_TRAIN, SMALL_TEST = 300, 100


@pytest.fixture(scope="module")
def small_splits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return xo_glyphs.make_xo_splits(seed=11, train_per_class=SMALL_TRAIN, test_per_class=SMALL_TEST)


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_same_seed_gives_identical_bytes() -> None:
    first = xo_glyphs.make_xo_splits(seed=3, train_per_class=40, test_per_class=10)
    second = xo_glyphs.make_xo_splits(seed=3, train_per_class=40, test_per_class=10)
    assert _digest(*first) == _digest(*second)


def test_different_seed_gives_different_glyphs() -> None:
    first = xo_glyphs.make_xo_splits(seed=3, train_per_class=40, test_per_class=10)
    second = xo_glyphs.make_xo_splits(seed=4, train_per_class=40, test_per_class=10)
    assert not np.array_equal(first[0], second[0])
    assert not np.array_equal(first[2], second[2])


def test_shapes_dtypes_and_balance(small_splits) -> None:
    x_train, y_train, x_test, y_test = small_splits
    assert x_train.shape == (2 * SMALL_TRAIN, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (2 * SMALL_TEST, 28, 28) and x_test.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert np.bincount(y_train).tolist() == [SMALL_TRAIN, SMALL_TRAIN]
    assert np.bincount(y_test).tolist() == [SMALL_TEST, SMALL_TEST]
    # Shuffled, as the course's set is: labels change often, not once after all the Os.
    assert len(np.flatnonzero(np.diff(y_train))) > SMALL_TRAIN // 2


def test_train_and_test_share_no_glyph(small_splits) -> None:
    x_train, _, x_test, _ = small_splits
    train_rows = {image.tobytes() for image in x_train}
    assert len(train_rows) == len(x_train)
    assert not any(image.tobytes() in train_rows for image in x_test)


def test_looks_like_ink_on_a_dark_background(small_splits) -> None:
    images = small_splits[0]
    assert np.median(images) < 20  # mostly background
    assert (images.reshape(len(images), -1).max(axis=1) >= 150).all()  # every glyph has real ink
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    assert border.mean() < 10  # glyphs stay on the canvas


def _bounding_boxes(images: np.ndarray, threshold: int = 100) -> np.ndarray:
    ink = images >= threshold
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    height = 28 - np.argmax(rows, axis=1) - np.argmax(rows[:, ::-1], axis=1)
    width = 28 - np.argmax(cols, axis=1) - np.argmax(cols[:, ::-1], axis=1)
    return np.stack([height, width], axis=1)


def test_glyphs_vary_in_size_stroke_and_position(small_splits) -> None:
    images, labels = small_splits[0], small_splits[1]
    for label in (xo_glyphs.LABEL_O, xo_glyphs.LABEL_X):
        subset = images[labels == label].astype(np.float64)
        mass = subset.sum(axis=(1, 2))
        assert mass.std() / mass.mean() > 0.2, "ink mass (stroke width x size) barely varies"
        boxes = _bounding_boxes(subset)
        assert np.ptp(boxes[:, 0]) >= 8 and np.ptp(boxes[:, 1]) >= 8, "sizes and aspects barely vary"
        ys, xs = np.mgrid[0:28, 0:28]
        centroid_x = (subset * xs).sum(axis=(1, 2)) / mass
        assert centroid_x.std() > 0.5, "every glyph sits at the same spot"


def test_some_os_are_left_open() -> None:
    """The hard-ish cases: an O whose pen did not close the loop (the ring has a gap)."""
    rng = np.random.default_rng(0)
    strokes = xo_glyphs.o_strokes(400, rng)
    ends = np.linalg.norm(strokes.xy[:, 0, 0] - strokes.xy[:, 0, -1], axis=1)
    assert (ends > 4.0).mean() > 0.1


def test_a_linear_model_separates_x_from_o(small_splits) -> None:
    """Catches a generator that draws garbage: a few hundred steps of logistic regression."""
    x_train, y_train, x_test, y_test = small_splits
    features = x_train.reshape(len(x_train), -1) / 255.0
    weights, bias = np.zeros(features.shape[1]), 0.0
    for _ in range(300):
        p = 1.0 / (1.0 + np.exp(-(features @ weights + bias)))
        grad = p - y_train
        weights -= 0.5 * (features.T @ grad / len(features) + 1e-3 * weights)
        bias -= 0.5 * grad.mean()
    predictions = (x_test.reshape(len(x_test), -1) / 255.0) @ weights + bias > 0
    accuracy = (predictions == y_test).mean()
    assert accuracy >= 0.9, f"X vs O accuracy {accuracy:.3f}"


def test_render_sheet_writes_a_png(tmp_path, small_splits) -> None:
    target = tmp_path / "sheet.png"
    xo_glyphs.render_sheet(small_splits[0][:12], small_splits[1][:12], target, columns=6)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # no temporary left behind


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError):
        xo_glyphs.generate_glyphs(-1, np.random.default_rng(0))
