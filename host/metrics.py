"""How close one model's outputs are to another's: the figures of `k210 verify` and `k210 hil`.

Per output, the set ST Edge AI's `validate` reports: top-1 agreement (only where the output is a
vector of class scores), max abs error, MAE, RMSE, L2 relative error, mean cosine, NSE (Nash-Sutcliffe
efficiency: 1 - sum(err^2) / sum((ref - mean(ref))^2)), and the error's mean and spread.
Classification accuracy is added only where labels exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from k210.core.errors import BadInputError


def is_class_scores(per_image_shape: Sequence[int], classes: int | None = None,
                    reference: np.ndarray | None = None) -> bool:
    """A vector of >= 2 scores per image (batch and unit dims aside): as many as the classes when they are
    known, else (with `reference` outputs) rows that look like probabilities (>= 0, summing to 1)."""
    dims = [d for d in per_image_shape if d != 1]
    if len(dims) != 1 or dims[0] < 2:
        return False
    if classes is not None:
        return dims[0] == classes
    if reference is not None and len(reference):
        rows = np.asarray(reference, np.float64).reshape(len(reference), -1)
        return bool((rows >= -1e-6).all() and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))
    return True


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None, *,
            class_scores: bool = True) -> dict:
    """Metrics of `candidate` against `reference`, both [N, ...] outputs of one tensor."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    if ref.shape != cand.shape:
        raise BadInputError(f"output shapes differ: {list(ref.shape[1:])} vs {list(cand.shape[1:])} values per input")
    n = len(ref)
    err = cand - ref
    dot = (ref * cand).sum(axis=1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(norms > 0, dot / np.where(norms > 0, norms, 1), 1.0)
    ref_norm = np.linalg.norm(ref)
    spread = float(((ref - ref.mean()) ** 2).sum()) if n else 0.0
    sq = float((err**2).sum()) if n else 0.0
    result = {
        "count": n,
        "values": int(ref.shape[1]) if n else 0,
        "max_abs_error": float(np.abs(err).max()) if n else 0.0,
        "mae": float(np.abs(err).mean()) if n else 0.0,
        "rmse": float(np.sqrt((err**2).mean())) if n else 0.0,
        "cosine": float(cosine.mean()) if n else 0.0,
        "l2_relative_error": float(np.linalg.norm(err) / ref_norm) if n and ref_norm > 0 else 0.0,
        "nse": (1.0 - sq / spread) if spread > 0 else (1.0 if sq == 0 else float("-inf")),
        "error_mean": float(err.mean()) if n else 0.0,
        "error_std": float(err.std()) if n else 0.0,
    }
    if class_scores:
        ref_top, cand_top = ref.argmax(axis=1), cand.argmax(axis=1)
        result["agreement"] = float((ref_top == cand_top).mean()) if n else 0.0
        if labels is not None and n:
            labels = np.asarray(labels).reshape(-1)
            result["reference_accuracy"] = float((ref_top == labels).mean())
            result["kmodel_accuracy"] = float((cand_top == labels).mean())
    return result


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix.tolist()


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.reshape(len(outputs), -1).argmax(1) == labels).mean()) if len(labels) else 0.0


def passes(figures: dict, min_agreement: float, min_cosine: float) -> bool:
    """Class scores pass on top-1 agreement, other outputs (boxes, embeddings) on mean cosine."""
    if "agreement" in figures:
        return figures["agreement"] >= min_agreement
    return figures["cosine"] >= min_cosine
