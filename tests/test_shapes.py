"""The procedural coloured-shapes set: deterministic, balanced, RGB, splits that share nothing."""

from __future__ import annotations

import numpy as np
import pytest

from k210.models import shapes


def test_same_seed_same_images_other_seed_other_images() -> None:
    a = shapes.generate_shapes(3, np.random.default_rng(7), size=32)
    b = shapes.generate_shapes(3, np.random.default_rng(7), size=32)
    c = shapes.generate_shapes(3, np.random.default_rng(8), size=32)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_splits_are_balanced_rgb_and_disjoint() -> None:
    x_train, y_train, x_test, y_test = shapes.make_shapes_splits(0, train_per_class=6, test_per_class=2, size=48)
    classes = len(shapes.LABELS)
    assert x_train.shape == (6 * classes, 48, 48, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (2 * classes, 48, 48, 3)
    assert np.bincount(y_train).tolist() == [6] * classes and np.bincount(y_test).tolist() == [2] * classes
    seen = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in seen for image in x_test)
    # Colour: the channels differ (not a grey image copied three times) and the pixels span a range.
    assert np.abs(x_train[..., 0].astype(int) - x_train[..., 1]).mean() > 5
    assert x_train.std() > 30


def test_the_shape_stands_out_from_its_background() -> None:
    """Each class's mean image differs: without distinct shapes a classifier could not learn them."""
    images, labels = shapes.generate_shapes(40, np.random.default_rng(1), size=32)
    # Distance of every pixel from the image's median colour: large where the shape is.
    contrast = np.abs(images.astype(np.float32) - np.median(images, axis=(1, 2), keepdims=True)).mean(axis=-1)
    masks = contrast > 40
    assert masks.mean(axis=(1, 2)).min() > 0.02  # every image has a visible shape
    class_means = np.stack([masks[labels == k].mean(axis=0) for k in range(len(shapes.LABELS))])
    # The ring's hole and the cross's empty corners: class masks are not all the same blob.
    assert np.abs(class_means[0] - class_means[4]).max() > 0.2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        shapes.generate_shapes(-1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        shapes.generate_shapes(1, np.random.default_rng(0), size=8)


def test_registered_as_a_named_dataset() -> None:
    from k210.models.datasets import dataset_names

    assert "shapes" in dataset_names()
