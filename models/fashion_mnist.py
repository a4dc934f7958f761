"""Fashion-MNIST from its IDX files: Debian's ``dataset-fashion-mnist`` package or a user folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError

from .idx import find_split_files, read_split_folder

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def load_fashion_mnist(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The four arrays and where they came from; ``path`` is a folder with the 4 IDX files."""
    if path is not None:
        return read_split_folder(path, "Fashion-MNIST"), str(path)
    if find_split_files(DEBIAN_DIR) is None:
        raise BadInputError(
            f"Fashion-MNIST not found in {DEBIAN_DIR}: install it with `apt-get install "
            "dataset-fashion-mnist`, or pass --data FOLDER with its four IDX files"
        )
    return read_split_folder(DEBIAN_DIR, "Fashion-MNIST"), f"{DEBIAN_DIR} (Debian dataset-fashion-mnist)"
