"""Named datasets for training, calibration and verification, as uint8 images.

Every loader returns the same :class:`Dataset` (the seeds' sets are 28x28 grayscale, 0 = background,
255 = ink, as in MNIST; a registered set may hold any H x W (x C) images) and every failure is a
one-line :class:`~k210.core.errors.BadInputError`. The user's own data (an image folder, arrays,
``random``) is read for a given model input by :mod:`k210.host.inputdata`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from k210.core.errors import BadInputError

from . import xo_glyphs

IMAGE_SHAPE = (28, 28)
XO_LABELS = xo_glyphs.LABELS  # ("O", "X"): the course's 0 and 1
DIGIT_LABELS = tuple(str(digit) for digit in range(10))


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous: compare datasets field by field
class Dataset:
    name: str
    x_train: np.ndarray  # uint8 [N, H, W] (grayscale) or [N, H, W, C]; the seeds' sets are [N, 28, 28]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray  # uint8 [M, H, W(, C)]
    y_test: np.ndarray  # int64 [M]
    labels: tuple[str, ...]  # class names, index = label
    source: str  # where it came from: a path, a generator seed, a URL


PathArg = str | os.PathLike[str] | None
_Loader = Callable[[PathArg, int], Dataset]
RANDOM = "random"


def _load_xo(path: PathArg, seed: int) -> Dataset:
    if path is not None:
        raise BadInputError("dataset 'xo' is generated, it reads no file; for the course's pickle use "
                            "'xo-course', for downloaded EMNIST 'xo-emnist'")
    x_train, y_train, x_test, y_test = xo_glyphs.make_xo_splits(seed)
    return Dataset("xo", x_train, y_train, x_test, y_test, XO_LABELS,
                   f"procedural X/O glyphs (k210.models.xo_glyphs, seed {seed})")


def _load_xo_emnist(path: PathArg, seed: int) -> Dataset:
    from .emnist import load_emnist_xo

    arrays, source = load_emnist_xo(path)
    arrays = _shuffled(arrays, seed)  # the course's set is shuffled; EMNIST comes in file order
    return _build("xo-emnist", arrays, XO_LABELS, f"EMNIST letters O/X from {source}")


def _load_xo_course(path: PathArg, seed: int) -> Dataset:
    from .course_pickle import load_course_pickle

    if path is None:
        raise BadInputError("dataset 'xo-course' needs the course's xo_dataset.bin: pass --data PATH")
    raw = load_course_pickle(path)
    arrays = {"x_train": raw["train_images"], "y_train": raw["train_labels"],
              "x_test": raw["test_images"], "y_test": raw["test_labels"]}
    return _build("xo-course", arrays, XO_LABELS, f"course pickle {path}")


def _load_fashion(path: PathArg, seed: int) -> Dataset:
    from .fashion_mnist import FASHION_LABELS, load_fashion_mnist

    arrays, source = load_fashion_mnist(path)
    return _build("fashion-mnist", arrays, FASHION_LABELS, source)


def _load_mnist(path: PathArg, seed: int) -> Dataset:
    from .mnist import load_mnist

    arrays, source = load_mnist(path)
    return _build("mnist", arrays, DIGIT_LABELS, source)


def _load_shapes(path: PathArg, seed: int) -> Dataset:
    from . import shapes

    if path is not None:
        raise BadInputError("dataset 'shapes' is generated, it reads no file")
    x_train, y_train, x_test, y_test = shapes.make_shapes_splits(seed)
    return Dataset("shapes", x_train, y_train, x_test, y_test, shapes.LABELS,
                   f"procedural coloured shapes, 128x128 RGB (k210.models.shapes, seed {seed})")


def _load_random(path: PathArg, seed: int) -> Dataset:
    raise BadInputError("dataset 'random' is generated for a model's input: use it with compile, verify or hil")


_REGISTRY: dict[str, tuple[_Loader, str]] = {
    "xo": (_load_xo, "hand-drawn-looking X/O glyphs, generated offline (4800+4800 / 800+800, --seed)"),
    "xo-emnist": (_load_xo_emnist, "X/O from EMNIST letters, downloaded once and cached (or --data gzip.zip)"),
    "xo-course": (_load_xo_course, "the course's xo_dataset.bin pickle (--data PATH), read safely"),
    "fashion-mnist": (_load_fashion, "Fashion-MNIST, Debian dataset-fashion-mnist or --data FOLDER of IDX files"),
    "mnist": (_load_mnist, "MNIST digits from Keras's mnist.npz cache or --data PATH"),
    RANDOM: (_load_random, "seeded uniform inputs over the model's input range, no labels (fidelity only)"),
    "shapes": (_load_shapes, "coloured circles/squares/triangles/crosses/rings, 128x128 RGB, generated offline "
               "(2000 / 500, --seed)"),
}


def register_dataset(name: str, loader: _Loader, description: str) -> None:
    """Add a named set (``loader(path, seed) -> Dataset``); images may be any size, RGB or grayscale."""
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} is already registered")
    _REGISTRY[name] = (loader, description)


def dataset_names() -> list[str]:
    return list(_REGISTRY)


def describe_datasets() -> list[tuple[str, str]]:
    """(name, one-line description) for CLI help."""
    return [(name, description) for name, (_, description) in _REGISTRY.items()]


def load_dataset(name: str, *, path: str | os.PathLike[str] | None = None, seed: int = 0) -> Dataset:
    """Load dataset ``name``; ``path`` points at user-supplied files, ``seed`` drives generation
    and shuffling where the dataset has any."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise BadInputError(f"unknown dataset {name!r}; choose one of: {', '.join(_REGISTRY)}")
    loader, _ = entry
    return loader(path, seed)


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] or [N, H, W, C] -> float32 [N, H, W, C] in [0, 1], dividing by 255 as the seeds do."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise BadInputError(f"normalise expects uint8 pixels, got {images.dtype} (already normalised?)")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise BadInputError(f"normalise expects images [N, H, W] or [N, H, W, 1 or 3], got shape {images.shape}")
    return images.astype(np.float32) / np.float32(255.0)


def sample_calibration(ds: Dataset, n: int, seed: int) -> np.ndarray:
    """``n`` distinct training images (uint8, as the dataset holds them) for post-training quantisation."""
    available = len(ds.x_train)
    if not 1 <= n <= available:
        raise BadInputError(f"calibration needs 1..{available} samples from {ds.name}, got {n}")
    rng = np.random.default_rng(seed)
    return ds.x_train[np.sort(rng.choice(available, size=n, replace=False))]


# --- shared checks -------------------------------------------------------------------------


def _shuffled(arrays: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train_order = train_rng.permutation(len(arrays["y_train"]))
    test_order = test_rng.permutation(len(arrays["y_test"]))
    return {"x_train": arrays["x_train"][train_order], "y_train": arrays["y_train"][train_order],
            "x_test": arrays["x_test"][test_order], "y_test": arrays["y_test"][test_order]}


def _build(name: str, arrays: dict[str, np.ndarray], labels: tuple[str, ...], source: str) -> Dataset:
    splits = {}
    for split in ("train", "test"):
        images = as_uint8_images(arrays[f"x_{split}"], f"{name} {split} images")
        targets = as_labels(arrays[f"y_{split}"], len(labels), f"{name} {split} labels")
        if len(images) != len(targets):
            raise BadInputError(f"{name}: {len(images)} {split} images but {len(targets)} labels")
        if len(images) == 0:
            raise BadInputError(f"{name}: the {split} split is empty")
        splits[split] = (images, targets)
    return Dataset(name, *splits["train"], *splits["test"], labels=labels, source=source)


def as_uint8_images(images: np.ndarray, what: str) -> np.ndarray:
    """[N, 28, 28] (or [N, 784], or [N, 28, 28, 1]) pixels as uint8; floats in [0, 1] are scaled."""
    images = np.asarray(images)
    if images.ndim == 2 and images.shape[1] == 28 * 28:
        images = images.reshape(-1, *IMAGE_SHAPE)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise BadInputError(f"{what}: expected shape [N, 28, 28], got {images.shape}")
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if images.dtype.kind not in "iuf":
        raise BadInputError(f"{what}: expected numeric pixels, got dtype {images.dtype}")
    if images.size and not np.isfinite(images).all():
        raise BadInputError(f"{what}: pixels contain NaN or infinity")
    low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise BadInputError(f"{what}: pixels range {low:g}..{high:g}, expected 0..255 (or 0..1)")
    if images.dtype.kind == "f" and high <= 1.0:
        images = images * 255.0
    return np.rint(images).astype(np.uint8)


def as_labels(labels: np.ndarray, classes: int, what: str) -> np.ndarray:
    """Class indices as int64 [N]; one-hot rows are accepted and turned into indices."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == classes:
        labels = labels.argmax(axis=1)
    if labels.ndim != 1:
        raise BadInputError(f"{what}: expected a vector of class indices, got shape {labels.shape}")
    if labels.dtype.kind not in "iuf":
        raise BadInputError(f"{what}: expected integer labels, got dtype {labels.dtype}")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise BadInputError(f"{what}: labels are not whole numbers")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise BadInputError(f"{what}: labels range {labels.min():g}..{labels.max():g}, "
                            f"expected 0..{classes - 1}")
    return labels.astype(np.int64)
