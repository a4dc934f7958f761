"""A folder of the user's images: class subfolders are labels (as Keras' image_dataset_from_directory),
a flat folder is unlabelled. Decoded with Pillow, made RGB or grayscale and resized as the model wants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from k210.core.errors import BadInputError

if TYPE_CHECKING:
    from k210.converters.preprocess import Preprocess

# The extensions Keras' image_dataset_from_directory reads; other files (READMEs, .DS_Store) are skipped.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class FolderImages:
    pixels: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None  # int64 [N], class index = position in class_names; None: unlabelled
    class_names: tuple[str, ...]
    files: tuple[str, ...]  # relative to the folder, in the order of `pixels`


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def list_image_folder(root: str | os.PathLike[str]) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """The image files of `root`, their class indices (None if unlabelled) and the class names."""
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"image folder not found: {root}")
    try:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        top = _images_in(root)
    except OSError as exc:
        raise BadInputError(f"cannot read image folder {root}: {exc.strerror or exc}") from None
    if subdirs and top:
        raise BadInputError(f"{root} holds both images and subfolders: put every image in a class folder "
                            "(labelled), or all of them straight in the folder (unlabelled)")
    if not subdirs:
        if not top:
            raise BadInputError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return top, None, ()
    if len(subdirs) == 1:
        raise BadInputError(f"{root} has one class folder ('{subdirs[0].name}'): labelled data needs at least two "
                            "classes; for unlabelled data put the images straight in the folder")
    files: list[Path] = []
    labels: list[int] = []
    for index, sub in enumerate(subdirs):
        images = _images_in(sub)
        if not images:
            raise BadInputError(f"class folder {sub} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += images
        labels += [index] * len(images)
    return files, labels, tuple(p.name for p in subdirs)


def load_image_folder(root: str | os.PathLike[str], spec: Preprocess, *, limit: int | None = None,
                      seed: int = 0) -> FolderImages:
    """Decode every image (or `limit` of them, a seeded stratified-by-order sample) to the spec's pixels."""
    from PIL import Image, UnidentifiedImageError

    from k210.converters.preprocess import fit_image

    root = Path(root)
    files, labels, names = list_image_folder(root)
    order = np.arange(len(files))
    if limit is not None and limit < len(files):
        order = np.sort(np.random.default_rng(seed).choice(len(files), size=limit, replace=False))
    pixels = np.empty((len(order), *spec.image_shape), np.uint8)
    sizes: set[tuple[int, int]] = set()
    for row, i in enumerate(order):
        path = files[i]
        what = f"image {path.relative_to(root)}"
        try:
            with Image.open(path) as image:
                image.load()
                sizes.add(image.size)
                if spec.resize == "none" and len(sizes) > 1:
                    a, b = sorted(sizes)[:2]
                    raise BadInputError(f"{root}: images of mixed sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}) and "
                                        "resizing is off (--resize none)")
                pixels[row] = fit_image(image, spec, what)
        except BadInputError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BadInputError(f"cannot read {what} in {root}: {_reason(exc)}") from None
    y = None if labels is None else np.asarray(labels, np.int64)[order]
    return FolderImages(pixels, y, names, tuple(str(files[i].relative_to(root)) for i in order))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
