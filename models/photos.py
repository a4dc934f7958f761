"""Real photographs that registry packages ship, for calibrating and checking camera models offline.

scikit-image's wheel carries its sample photographs as plain PNG/JPEG files (skimage/data/) and
matplotlib's carries Grace Hopper's portrait (mpl-data/sample_data/). Both are read from the
packages' folders with Pillow, without importing the packages (scikit-image is installed without
its dependencies: requirements-data.txt).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError

# Photographs (not drawings, masks or synthetic images) in scikit-image 0.25's wheel, and which
# of them show a human face.
SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
                  "motorcycle_right.png", "hubble_deep_field.jpg", "coins.png", "moon.png", "retina.jpg",
                  "gravel.png", "grass.png", "brick.png")
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
FACES = ("astronaut", "camera", "grace_hopper")  # a face large enough for a 128x128 detector


@dataclass(frozen=True)
class Photo:
    name: str  # file name without extension
    pixels: np.ndarray  # uint8 [H, W, 3], RGB (grayscale photographs are repeated over 3 channels)
    source: Path


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def photo_files() -> list[Path]:
    """The photographs' files; a missing package or file is a one-line error saying how to get it."""
    skimage, matplotlib = _package_dir("skimage"), _package_dir("matplotlib")
    if skimage is None or matplotlib is None:
        missing = "scikit-image" if skimage is None else "matplotlib"
        raise BadInputError(f"{missing} is not installed: `make setup` installs it (requirements-data.txt)")
    files = [skimage / "data" / name for name in SKIMAGE_PHOTOS]
    files += [matplotlib / "mpl-data" / "sample_data" / name for name in MATPLOTLIB_PHOTOS]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise BadInputError(f"sample photographs missing: {', '.join(absent)}")
    return files


def load_photos() -> list[Photo]:
    from PIL import Image

    photos = []
    for path in photo_files():
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), np.uint8)
        photos.append(Photo(path.stem, pixels, path))
    return photos


def centre_square(pixels: np.ndarray) -> np.ndarray:
    """The largest centred square: resizing it to a square input keeps the photo's proportions."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return pixels[top:top + side, left:left + side]


def random_square_crops(pixels: np.ndarray, count: int, rng: np.random.Generator,
                        min_fraction: float = 0.5) -> list[np.ndarray]:
    """``count`` square crops of at least ``min_fraction`` of the shorter side, anywhere in the photo."""
    h, w = pixels.shape[:2]
    crops = []
    for _ in range(count):
        side = int(rng.uniform(min_fraction, 1.0) * min(h, w))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crops.append(pixels[top:top + side, left:left + side])
    return crops


def write_crops(folder: Path, per_photo: int, seed: int = 0) -> Path:
    """`per_photo` random square crops of every photograph as PNGs in `folder` (an image folder for --data)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for photo in load_photos():
        for i, crop in enumerate(random_square_crops(photo.pixels, per_photo, rng)):
            Image.fromarray(crop).save(folder / f"{photo.name}_{i}.png")
    return folder
