"""MNIST from Keras's ``mnist.npz`` (its cache or a user path), or a folder of the IDX files."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from k210.host.errors import BadInputError

from .idx import find_split_files, read_split_folder

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
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
        if not npz.is_file():
            raise BadInputError(f"MNIST not found at {npz}: {HOW_TO_GET}")
        return read_mnist_npz(npz), str(npz)
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
