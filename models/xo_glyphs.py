"""Procedural hand-drawn-looking X and O glyphs: the offline stand-in for the course's X/O set.

Each glyph is a set of pen strokes (jittered polylines) rendered as an anti-aliased distance
field: a pixel's ink is how far inside the stroke's (varying) half-width it lies. Everything is
vectorised over images, so the course-sized set (11 200 images) takes a second or two.

Labels follow the course's ``xo_dataset.bin``: 0 = O, 1 = X.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

SIZE = 28
LABELS: tuple[str, str] = ("O", "X")
LABEL_O, LABEL_X = 0, 1

# Points per stroke: an O is one closed-ish loop, an X two straight-ish strokes.
_O_POINTS = 25
_X_POINTS = 7
_RENDER_BATCH = 256  # images rendered at once: keeps the [batch, 784] temporaries cache-sized
# Outer size of a glyph's box in pixels (EMNIST letters fill about 24 of 28) and how far its
# centre strays from the canvas centre.
_MIN_EXTENT, _MAX_EXTENT = 14.0, 25.0
_SHIFT_SIGMA = 0.8


@dataclass(frozen=True)
class Strokes:
    """Polylines for a batch of glyphs: ``xy`` [N, S, K, 2] pixel coordinates, ``width`` [N, S, K]
    half-widths in pixels (pen pressure varies along a stroke)."""

    xy: np.ndarray
    width: np.ndarray


def split_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the train and test splits, so they never share a glyph."""
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(train_seq), np.random.default_rng(test_seq)


def make_xo_splits(
    seed: int = 0, train_per_class: int = 4800, test_per_class: int = 800
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The course-sized X/O set: (x_train, y_train, x_test, y_test), uint8 images, int64 labels."""
    train_rng, test_rng = split_streams(seed)
    x_train, y_train = generate_glyphs(train_per_class, train_rng)
    x_test, y_test = generate_glyphs(test_per_class, test_rng)
    return x_train, y_train, x_test, y_test


def generate_glyphs(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` Os and as many Xs, shuffled: uint8 [2n, 28, 28] and int64 [2n]."""
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    o_images = _finish(render_strokes(o_strokes(n_per_class, rng)), rng)
    x_images = _finish(render_strokes(x_strokes(n_per_class, rng)), rng)
    images = np.concatenate([o_images, x_images])
    labels = np.repeat(np.array([LABEL_O, LABEL_X], dtype=np.int64), n_per_class)
    order = rng.permutation(len(labels))
    return images[order], labels[order]


# --- stroke geometry ------------------------------------------------------------------------


def _size_and_pen(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Outer extent of each glyph (px, pen included) and its stroke half-width, from hairline to
    marker; the width is capped so that small glyphs keep their hole and their arms."""
    extent = rng.uniform(_MIN_EXTENT, _MAX_EXTENT, n)
    width = np.minimum(rng.uniform(0.65, 2.4, n), 0.08 * extent + 0.3)
    return extent, width


def _pressure(width: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Half-width along each stroke: the glyph's pen width, modulated smoothly like pen pressure."""
    n, strokes, points = shape
    t = np.linspace(0.0, 1.0, points)
    swell = rng.uniform(-0.25, 0.25, (n, strokes, 1)) * np.sin(np.pi * t)  # heavier mid-stroke, or lighter
    taper = rng.uniform(-0.2, 0.1, (n, strokes, 1)) * t  # the pen lifts (or presses) towards the end
    return width[:, None, None] * (1.0 + swell + taper)


def _place(local: np.ndarray, extent: np.ndarray, width: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slant, rotate, scale and centre glyphs drawn around (0, 0) ([N, S, K, 2]) on the canvas.

    Like EMNIST's preprocessing, the glyph's box is scaled to a target size (varied here) and
    centred, with a small random shift: an MLP has no translation invariance, so wild placement
    would make the set unlike the course's and much harder than it.
    """
    n = local.shape[0]
    shear = rng.uniform(-0.3, 0.3, n)  # handwriting slant
    angle = rng.uniform(-0.2, 0.2, n)
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = local[..., 0], local[..., 1]
    x = x + shear[:, None, None] * y
    xr = cos[:, None, None] * x - sin[:, None, None] * y
    yr = sin[:, None, None] * x + cos[:, None, None] * y
    points = np.stack([xr, yr], axis=-1)
    lo = points.min(axis=(1, 2))
    hi = points.max(axis=(1, 2))
    longest = np.maximum((hi - lo).max(axis=1), 1e-3)
    scale = (extent - 2 * width) / longest
    points = (points - ((lo + hi) / 2)[:, None, None, :]) * scale[:, None, None, None]
    half_box = (hi - lo) / 2 * scale[:, None] + width[:, None]
    room = np.maximum(SIZE / 2 - 1.0 - half_box, 0.0)  # keep a 1 px margin
    shift = np.clip(rng.normal(0.0, _SHIFT_SIGMA, (n, 2)), -room, room)
    return points + (SIZE / 2 + shift)[:, None, None, :]


def o_strokes(n: int, rng: np.random.Generator) -> Strokes:
    """Os: one wobbly, sometimes spiralling ellipse; its ends overshoot, meet or leave a gap."""
    extent, width = _size_and_pen(n, rng)
    aspect = rng.uniform(0.6, 1.2, n)  # height / width: narrow ovals to slightly wide ones
    tilt = rng.uniform(-np.pi, np.pi, n)
    # Span of the loop in turns: mostly closed (with overlap), a fifth of them left open.
    open_loop = rng.random(n) < 0.2
    turns = np.where(open_loop, rng.uniform(0.78, 0.95, n), rng.uniform(0.96, 1.12, n))
    start = rng.uniform(0.0, 2 * np.pi, n)
    u = np.linspace(0.0, 1.0, _O_POINTS)
    theta = start[:, None] + 2 * np.pi * turns[:, None] * u[None, :]
    # Low harmonics bend the loop like a hand would; a drift makes the end miss the start.
    wobble = np.ones_like(theta)
    for k in (2, 3, 4):
        amplitude = rng.uniform(0.0, 0.12 / k * 2, n)[:, None]
        wobble += amplitude * np.cos(k * theta + rng.uniform(0, 2 * np.pi, n)[:, None])
    drift = rng.uniform(-0.16, 0.16, n)[:, None] * u[None, :]
    r = wobble + drift
    ex = r * np.cos(theta)
    ey = r * np.sin(theta) * aspect[:, None]
    ct, st = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
    local = np.stack([ct * ex - st * ey, st * ex + ct * ey], axis=-1)
    local += rng.normal(0.0, 0.02, local.shape)  # hand tremor
    local = local[:, None]  # one stroke
    xy = _place(local, extent, width, rng)
    return Strokes(xy=xy, width=_pressure(width, (n, 1, _O_POINTS), rng))


def x_strokes(n: int, rng: np.random.Generator) -> Strokes:
    """Xs: two slightly bowed strokes of unequal length crossing off-centre at varied angles."""
    extent, width = _size_and_pen(n, rng)
    aspect = rng.uniform(0.7, 1.25, n)
    base = np.stack([np.full(n, np.pi / 4), np.full(n, 3 * np.pi / 4)], axis=1)
    angles = base + rng.uniform(-0.35, 0.35, (n, 2))
    lengths = rng.uniform(0.8, 1.15, (n, 2))
    cross = rng.uniform(-0.3, 0.3, (n, 2))  # where along each stroke the other one crosses it
    nudge = rng.normal(0.0, 0.07, (n, 2, 2))  # the strokes miss a common centre a little
    bow = rng.uniform(-0.12, 0.12, (n, 2)) * lengths  # curvature: sideways offset at mid-stroke
    t = np.linspace(-1.0, 1.0, _X_POINTS)
    along = lengths[..., None] * (t[None, None, :] - cross[..., None])
    side = bow[..., None] * (1.0 - t[None, None, :] ** 2)
    dx, dy = np.cos(angles)[..., None], np.sin(angles)[..., None]
    x = along * dx - side * dy + nudge[..., 0:1]
    y = (along * dy + side * dx + nudge[..., 1:2]) * aspect[:, None, None]
    local = np.stack([x, y], axis=-1)
    local += rng.normal(0.0, 0.025, local.shape)
    # Draw order: the second stroke is sometimes drawn in the opposite direction (affects tapering).
    flip = rng.random(n) < 0.5
    local[flip, 1] = local[flip, 1, ::-1]
    xy = _place(local, extent, width, rng)
    return Strokes(xy=xy, width=_pressure(width, (n, 2, _X_POINTS), rng))


# --- rendering --------------------------------------------------------------------------------

_CENTRES = np.arange(SIZE, dtype=np.float32) + 0.5
_PX = np.tile(_CENTRES, SIZE)  # x of each pixel, row-major
_PY = np.repeat(_CENTRES, SIZE)


def render_strokes(strokes: Strokes) -> np.ndarray:
    """Ink coverage in [0, 1], float32 [N, 28, 28]: 1 inside a stroke, a one-pixel soft edge."""
    n = strokes.xy.shape[0]
    out = np.empty((n, SIZE * SIZE), dtype=np.float32)
    for lo in range(0, n, _RENDER_BATCH):
        hi = min(lo + _RENDER_BATCH, n)
        out[lo:hi] = _render_batch(strokes.xy[lo:hi], strokes.width[lo:hi])
    return out.reshape(n, SIZE, SIZE)


def _render_batch(xy: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Signed distance to the nearest stroke edge, turned into coverage, for [B, S, K] polylines."""
    b, strokes, points, _ = xy.shape
    xy = xy.astype(np.float32)
    width = width.astype(np.float32)
    inside = np.full((b, SIZE * SIZE), -np.inf, dtype=np.float32)  # max over segments of (width - dist)
    for s in range(strokes):
        for k in range(points - 1):
            ax, ay = xy[:, s, k, 0:1], xy[:, s, k, 1:2]
            ux, uy = xy[:, s, k + 1, 0:1] - ax, xy[:, s, k + 1, 1:2] - ay
            inv_len2 = 1.0 / np.maximum(ux * ux + uy * uy, 1e-6)
            dx = _PX - ax
            dy = _PY - ay
            t = np.clip((dx * ux + dy * uy) * inv_len2, 0.0, 1.0)
            dx -= t * ux
            dy -= t * uy
            w0, w1 = width[:, s, k : k + 1], width[:, s, k + 1 : k + 2]
            margin = w0 + t * (w1 - w0) - np.sqrt(dx * dx + dy * dy)
            np.maximum(inside, margin, out=inside)
    return np.clip(inside + 0.5, 0.0, 1.0)


def _finish(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coverage -> uint8 like a scanned pen stroke: varied ink, a little blur, sensor noise."""
    n = coverage.shape[0]
    blur = rng.uniform(0.0, 0.6, n)[:, None, None]
    soft = _box3(coverage)
    image = (1.0 - blur) * coverage + blur * soft
    ink = rng.uniform(0.78, 1.0, n)[:, None, None]
    # Contrast stretch so thin strokes still reach the glyph's ink level, as in EMNIST.
    image = np.clip(image * 1.15, 0.0, 1.0) * ink
    sigma = rng.uniform(0.0, 0.045, n)[:, None, None]
    image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _box3(images: np.ndarray) -> np.ndarray:
    """3x3 mean filter with zero padding, vectorised over the batch."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    rows = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]
    return (rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]) / 9.0


# --- looking at them --------------------------------------------------------------------------


def render_sheet(
    images: np.ndarray,
    labels: np.ndarray | None,
    path: str | os.PathLike[str],
    *,
    columns: int = 8,
    label_names: tuple[str, ...] = LABELS,
) -> None:
    """Save a PNG contact sheet of ``images`` (uint8 [N, 28, 28]), each titled with its label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from k210.core.fsutil import atomic_path

    count = len(images)
    rows = max(1, -(-count // columns))
    figure = Figure(figsize=(columns * 0.9, rows * 1.0), dpi=100)
    FigureCanvasAgg(figure)
    for i in range(rows * columns):
        axis = figure.add_subplot(rows, columns, i + 1)
        axis.set_axis_off()
        if i >= count:
            continue
        axis.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if labels is not None:
            axis.set_title(label_names[int(labels[i])], fontsize=8, pad=2)
    figure.tight_layout(pad=0.3)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
