"""Procedural coloured shapes on textured backgrounds: an offline RGB set for camera-sized models.

Each image is one shape (circle, square, triangle, cross or ring) of random size, position,
rotation and colour over a two-colour gradient background with sensor-like noise and a few faint
distractor blobs. Shapes are drawn from signed distance fields with one pixel of anti-aliasing, all
vectorised over a batch, so the default set (2000 + 500 images at 128x128) takes a few seconds.
Deterministic by seed; the train and test splits come from independent streams and never share an
image.
"""

from __future__ import annotations

import numpy as np

SIZE = 128
LABELS: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
_BATCH = 64  # images rendered at once: keeps the float temporaries at a few MB
_NOISE_SIGMA = 6.0  # pixel noise, in 0..255 units
_DISTRACTORS = 3  # faint blobs per image, so "a blob of colour" alone does not give the class away


def make_shapes_splits(seed: int = 0, train_per_class: int = 400, test_per_class: int = 100,
                       size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): uint8 [N, size, size, 3] images and int64 labels."""
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    x_train, y_train = generate_shapes(train_per_class, np.random.default_rng(train_seq), size)
    x_test, y_test = generate_shapes(test_per_class, np.random.default_rng(test_seq), size)
    return x_train, y_train, x_test, y_test


def generate_shapes(n_per_class: int, rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of every class, shuffled: uint8 [n * classes, size, size, 3], int64 labels."""
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    labels = rng.permutation(np.repeat(np.arange(len(LABELS), dtype=np.int64), n_per_class))
    images = np.empty((len(labels), size, size, 3), np.uint8)
    for start in range(0, len(labels), _BATCH):
        images[start:start + _BATCH] = _render(labels[start:start + _BATCH], rng, size)
    return images, labels


# --- rendering ------------------------------------------------------------------------------


def _render(labels: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    n = len(labels)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in [0, 1]
    py, px = np.meshgrid(grid, grid, indexing="ij")
    dark_background = rng.random(n) < 0.5
    image = _background(n, dark_background, px, py, rng)
    for _ in range(_DISTRACTORS):  # soft discs of a colour near the background's, under the shape
        centre = rng.uniform(0, 1, (n, 2)).astype(np.float32)
        radius = rng.uniform(0.03, 0.10, n).astype(np.float32)
        distance = np.hypot(px - centre[:, 0, None, None], py - centre[:, 1, None, None])
        blob = np.clip((radius[:, None, None] - distance) * size / 4.0, 0, 1)[..., None] * 0.35
        tint = image.mean(axis=(1, 2)) + rng.normal(0, 40, (n, 3)).astype(np.float32)
        image = image * (1 - blob) + tint[:, None, None, :] * blob
    # The shape: centre keeps it inside the canvas, radius 18..40 % of the side.
    radius = rng.uniform(0.18, 0.40, n).astype(np.float32)
    centre = np.stack([rng.uniform(radius, 1 - radius), rng.uniform(radius, 1 - radius)], axis=1).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    dx, dy = px - centre[:, 0, None, None], py - centre[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # shape-aligned coordinates
    r = radius[:, None, None]
    sdf = np.empty_like(u)
    for label, field in enumerate(_FIELDS):
        chosen = labels == label
        if chosen.any():
            sdf[chosen] = field(u[chosen], v[chosen], r[chosen])
    coverage = np.clip(0.5 - sdf * size, 0, 1)[..., None]  # one pixel of anti-aliasing
    colour = _shape_colours(dark_background, rng)
    image = image * (1 - coverage) + colour[:, None, None, :] * coverage
    image += rng.normal(0, _NOISE_SIGMA, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _background(n: int, dark: np.ndarray, px: np.ndarray, py: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear gradient between two colours of the background's brightness, in a random direction."""
    low, high = np.where(dark[:, None], 0.0, 150.0), np.where(dark[:, None], 105.0, 255.0)
    start = rng.uniform(low, high, (n, 3)).astype(np.float32)
    end = rng.uniform(low, high, (n, 3)).astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    t = (np.cos(direction)[:, None, None] * (px - 0.5) + np.sin(direction)[:, None, None] * (py - 0.5)) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    return start[:, None, None, :] * (1 - t) + end[:, None, None, :] * t


def _shape_colours(dark_background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright shapes on dark backgrounds and dark on bright, any hue: contrast without one colour per class."""
    n = len(dark_background)
    bright = rng.uniform(150, 255, (n, 3))
    dark = rng.uniform(0, 105, (n, 3))
    return np.where(dark_background[:, None], bright, dark).astype(np.float32)


def _circle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) - r


def _square(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    half = r * 0.8  # a square of the same area-ish as the circle of radius r
    return np.maximum(np.abs(u), np.abs(v)) - half


def _triangle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    # An equilateral triangle: the farthest of three edge half-planes, 120 degrees apart.
    edges = [np.cos(a) * u + np.sin(a) * v for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)]
    return np.maximum(np.maximum(edges[0], edges[1]), edges[2]) - r * 0.5


def _cross(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    arm = r * 0.28
    bar_u = np.maximum(np.abs(u) - r, np.abs(v) - arm)
    bar_v = np.maximum(np.abs(v) - r, np.abs(u) - arm)
    return np.minimum(bar_u, bar_v)


def _ring(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(u, v) - r * 0.75) - r * 0.22


_FIELDS = (_circle, _square, _triangle, _cross, _ring)  # index = label, as LABELS
