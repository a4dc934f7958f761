"""Decoders from a detector's or segmenter's raw outputs to what its user sees: boxes, scores, masks.

Written from the published descriptions of the model families, not from any project's code:
- SSD with MediaPipe's anchor scheme (fixed-size anchors): layers of equal stride share one grid,
  each layer puts `anchors_per_layer` anchors on every cell, anchor centres at cell centres; the
  regressors give a box's centre relative to its anchor's centre and its width and height, in
  input pixels (scale = the input size); the score output holds logits (sigmoid, clipped at +-100).
- YOLOv2 (as aXeleRate's K210 detectors use): an [H, W, A * (5 + C)] grid; per anchor tx, ty, tw,
  th, objectness logit, C class logits; centre ((col, row) + sigmoid(t)) / grid, size
  anchor * exp(t) / grid (anchors in grid cells), score sigmoid(objectness) * softmax(class).
- masks: a probability map thresholded (one channel) or the argmax class (several channels).
Boxes are (xmin, ymin, xmax, ymax) in fractions of the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from k210.core.errors import BadInputError


def ssd_anchor_centres(width: int, height: int, strides: Sequence[int], anchors_per_layer: int = 2,
                       offset: float = 0.5) -> np.ndarray:
    """float32 [A, 2]: (x, y) of every anchor's centre in [0, 1], in the model's output order."""
    centres = []
    layer = 0
    strides = list(strides)
    while layer < len(strides):
        stride = strides[layer]
        same = sum(1 for _ in _run(strides, layer))  # consecutive layers of this stride share the grid
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid((np.arange(rows) + offset) / rows, (np.arange(cols) + offset) / cols, indexing="ij")
        cells = np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)
        centres.append(np.repeat(cells, same * anchors_per_layer, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def _run(strides: list[int], start: int):
    for s in strides[start:]:
        if s != strides[start]:
            return
        yield s


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -100, 100)))


def decode_ssd(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, scale: tuple[float, float]
               ) -> tuple[np.ndarray, np.ndarray]:
    """[N, A, K>=4] regressors, [N, A(,1)] logits -> boxes [N, A, 4], scores [N, A]."""
    raw = np.asarray(regressors, np.float64)
    n = len(raw)
    raw = raw.reshape(n, len(anchors), -1)
    if raw.shape[2] < 4:
        raise BadInputError(f"SSD regressors hold {raw.shape[2]} values per anchor; a box needs 4")
    sx, sy = scale
    cx = raw[..., 0] / sx + anchors[:, 0]
    cy = raw[..., 1] / sy + anchors[:, 1]
    w, h = raw[..., 2] / sx, raw[..., 3] / sy
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    return boxes, sigmoid(np.asarray(logits).reshape(n, len(anchors)))


def decode_yolo2(output: np.ndarray, anchors: Sequence[float], classes: int, layout: str = "NHWC"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, H, W, A*(5+C)] (or NCHW) -> boxes [N, H*W*A, 4], scores [N, H*W*A], class ids [N, H*W*A]."""
    grid = np.asarray(output, np.float64)
    if grid.ndim != 4:
        raise BadInputError(f"a YOLOv2 output is [N, H, W, A*(5+C)], got {list(grid.shape)}")
    if layout == "NCHW":
        grid = grid.transpose(0, 2, 3, 1)
    n, rows, cols, depth = grid.shape
    pairs = np.asarray(anchors, np.float64).reshape(-1, 2)
    if depth != len(pairs) * (5 + classes):
        raise BadInputError(f"a YOLOv2 output with {len(pairs)} anchors and {classes} classes has "
                            f"{len(pairs) * (5 + classes)} channels, this one {depth}")
    grid = grid.reshape(n, rows, cols, len(pairs), 5 + classes)
    ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    cx = (xs[None, :, :, None] + sigmoid(grid[..., 0])) / cols
    cy = (ys[None, :, :, None] + sigmoid(grid[..., 1])) / rows
    w = pairs[:, 0] * np.exp(np.clip(grid[..., 2], -50, 50)) / cols
    h = pairs[:, 1] * np.exp(np.clip(grid[..., 3], -50, 50)) / rows
    logits = grid[..., 5:]
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    score = sigmoid(grid[..., 4]) * probs.max(axis=-1)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    return boxes.reshape(n, -1, 4), score.reshape(n, -1), probs.argmax(axis=-1).reshape(n, -1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes, element-wise over the leading axes (broadcasting)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    union = _area(a) + _area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _area(box: np.ndarray) -> np.ndarray:
    return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(box[..., 3] - box[..., 1], 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, iou_threshold: float,
        max_boxes: int = 100) -> np.ndarray:
    """Indices of the boxes kept: score >= threshold, greedy suppression of overlaps > iou_threshold."""
    candidates = np.flatnonzero(scores >= threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    keep: list[int] = []
    for i in order:
        if len(keep) >= max_boxes:
            break
        if not keep or (iou(boxes[i], boxes[np.asarray(keep)]) <= iou_threshold).all():
            keep.append(int(i))
    return np.asarray(keep, np.int64)


def mask_of(output: np.ndarray, threshold: float, layout: str = "NHWC") -> np.ndarray:
    """[N, H, W, C] -> int [N, H, W]: a class per pixel (C > 1: argmax; C == 1: > threshold)."""
    x = np.asarray(output, np.float64)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise BadInputError(f"a mask output is [N, H, W(, C)], got {list(np.shape(output))}")
    if layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    return (x[..., 0] > threshold).astype(np.int64) if x.shape[-1] == 1 else x.argmax(axis=-1)
