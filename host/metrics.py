"""How close one model's outputs are to another's: the figures of `k210 verify` and `k210 hil`."""

from __future__ import annotations

import numpy as np


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Metrics of `candidate` against `reference`, both [N, classes] (or [N, ...]) float outputs."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    if ref.shape != cand.shape:
        raise ValueError(f"output shapes differ: {ref.shape} vs {cand.shape}")
    n = len(ref)
    err = cand - ref
    ref_top = ref.argmax(axis=1)
    cand_top = cand.argmax(axis=1)
    dot = (ref * cand).sum(axis=1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(norms > 0, dot / np.where(norms > 0, norms, 1), 1.0)
    ref_norm = np.linalg.norm(ref)
    result = {
        "count": n,
        "agreement": float((ref_top == cand_top).mean()) if n else 0.0,
        "max_abs_error": float(np.abs(err).max()) if n else 0.0,
        "mae": float(np.abs(err).mean()) if n else 0.0,
        "rmse": float(np.sqrt((err**2).mean())) if n else 0.0,
        "cosine": float(cosine.mean()) if n else 0.0,
        "l2_relative_error": float(np.linalg.norm(err) / ref_norm) if n and ref_norm > 0 else 0.0,
        "error_mean": float(err.mean()) if n else 0.0,
        "error_std": float(err.std()) if n else 0.0,
    }
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
