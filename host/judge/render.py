"""Text for judged outputs: the per-output table, the decoded tasks, the verdict line."""

from __future__ import annotations

from typing import Any

from k210.core.textfmt import format_table


def output_phrase(o: dict[str, Any]) -> str:
    """One output's deciding figures, in its own terms."""
    if o.get("note"):
        return f"output {o['output']} {o['note']}"
    limits = o.get("limits") or {}
    if o["kind"] == "scores":
        return f"output {o['output']} scores: agreement {o['agreement']:.4f} (minimum {limits.get('min_agreement')})"
    parts = [f"max abs {o['max_abs_error']:.4g}" + (f" (limit {limits['max_abs']:.4g})" if "max_abs" in limits else ""),
             f"NSE {o['nse']:.4f}", f"cosine {o['cosine']:.6f}"]
    return f"output {o['output']} values: " + ", ".join(parts)


def task_phrase(t: dict[str, Any]) -> str:
    if t["task"] == "mask":
        return f"mask IoU {t['mask_iou']:.3f}"
    return (f"detection: recall {t['recall']:.3f}, precision {t['precision']:.3f}, best-box IoU "
            f"{t['best_box_iou']:.3f} ({t['reference_boxes']} reference boxes)")


def headline(r: dict[str, Any], what: str = "") -> str:
    """'PASS: <figures>' or 'FAIL: <first reason> (and N more)'."""
    prefix = f"{what} " if what else ""
    reasons = r.get("reasons") or []
    if not r["passed"]:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return f"FAIL: {prefix}{reasons[0] if reasons else 'the check failed'}{more}"
    judged = [o for o in r["outputs"] if not o.get("note")]
    parts = [output_phrase(o) for o in judged] + [task_phrase(t) for t in r.get("tasks") or []]
    return f"PASS: {prefix}" + "; ".join(parts)


def outputs_table(outputs: list[dict[str, Any]]) -> str:
    rows = []
    for o in outputs:
        agreement = f"{o['agreement']:.4f}" if "agreement" in o else "-"
        status = o.get("note") or ("ok" if o["passed"] else "FAIL")
        rows.append((o["output"], "x".join(map(str, o["shape"])) or "1", o["kind"], agreement,
                     f"{o['max_abs_error']:.3g}", f"{o['mae']:.3g}", f"{o['rmse']:.3g}", f"{o['cosine']:.6f}",
                     f"{o['nse']:.4f}", status))
    return format_table(("output", "shape", "kind", "top-1 agree", "max abs", "MAE", "RMSE", "cosine", "NSE", ""), rows)


def tasks_lines(tasks: list[dict[str, Any]]) -> list[str]:
    return [f"decoded {t['task']} (outputs {', '.join(map(str, t['outputs']))}): {task_phrase(t)}"
            f"{'' if t['passed'] else ' FAIL'}" for t in tasks]
