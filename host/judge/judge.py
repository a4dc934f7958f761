"""One output against its reference under its rule: the figures, PASS or FAIL, and why.

A reference that cannot tell anything apart is its own verdict: when every reference output is the
same for every input, or the top class ties on most inputs, agreement with it proves nothing, so the
output FAILs with "the reference model's outputs do not vary on these inputs".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from k210.host.metrics import compare

from .rules import OutputRule

TIE_SHARE = 0.5  # scores: top-1 ties on more than this share of inputs make the reference uninformative


def uninformative(reference: np.ndarray, kind: str) -> str | None:
    """Why `reference` ([N, values]) cannot tell a right candidate from a wrong one, or None."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    if len(ref) == 0:
        return "no inputs were checked"
    scale = max(1.0, float(np.abs(ref).max()))
    if len(ref) >= 2 and float(np.ptp(ref, axis=0).max()) <= 1e-6 * scale:
        return "the reference model's outputs do not vary on these inputs (every input gives the same output)"
    if kind == "scores" and ref.shape[1] >= 2:
        top2 = np.sort(ref, axis=1)[:, -2:]
        ties = np.abs(top2[:, 1] - top2[:, 0]) <= 1e-6 * np.maximum(1.0, np.abs(top2[:, 1]))
        if ties.mean() > TIE_SHARE:
            return (f"the reference model's outputs do not vary on these inputs (its top class ties on "
                    f"{ties.mean():.0%} of them)")
    return None


def output_step(reference: np.ndarray) -> float:
    """One uint8 step of this output: the reference's measured range over the check data / 255."""
    ref = np.asarray(reference, np.float64)
    return float(ref.max() - ref.min()) / 255.0 if ref.size else 0.0


def judge_output(reference: np.ndarray, candidate: np.ndarray, rule: OutputRule,
                 labels: np.ndarray | None = None) -> dict[str, Any]:
    """compare()'s figures, plus `passed`, `reasons` (why not) and the limits the rule applied."""
    scores = rule.kind == "scores"
    figures = compare(reference, candidate, labels if scores else None, class_scores=scores)
    reasons: list[str] = []
    tol = rule.tolerance
    limits: dict[str, float] = {}
    if scores:
        minimum = tol.min_agreement if tol.min_agreement is not None else 0.99
        limits["min_agreement"] = minimum
        if figures["agreement"] < minimum:
            reasons.append(f"top-1 agreement {figures['agreement']:.4f} is below {minimum:g}")
    else:
        step = output_step(reference)
        figures["output_step"] = step
        max_abs = tol.max_abs if tol.max_abs is not None else (
            tol.max_steps * step if tol.max_steps is not None else None)
        if max_abs is not None:
            limits["max_abs"] = max_abs
            if figures["max_abs_error"] > max_abs:
                steps = f" = {figures['max_abs_error'] / step:.1f} output steps" if step > 0 else ""
                reasons.append(f"max abs error {figures['max_abs_error']:.4g}{steps} is above {max_abs:.4g}"
                               + (f" ({tol.max_steps:g} steps)" if tol.max_abs is None else ""))
        if tol.min_nse is not None:
            limits["min_nse"] = tol.min_nse
            if figures["nse"] < tol.min_nse:
                reasons.append(f"NSE {figures['nse']:.4f} is below {tol.min_nse:g}")
        if tol.min_cosine is not None:
            limits["min_cosine"] = tol.min_cosine
            if figures["cosine"] < tol.min_cosine:
                reasons.append(f"cosine {figures['cosine']:.4f} is below {tol.min_cosine:g}")
    why_not = uninformative(reference, rule.kind)
    if why_not:
        reasons.insert(0, why_not)
    figures.update(kind=rule.kind, limits=limits, passed=not reasons, reasons=reasons,
                   uninformative=why_not is not None)
    return figures
