"""The figures of a HIL run: board vs TF, board vs simulator, simulator vs TF, latency, the link.

Link utilisation is the busier direction's bytes (host to board, for image models) over what the
line could carry while the boards streamed: bytes ÷ (seconds × baud/10). Every byte counts,
resent ones included, and so does every second, the board's compute and any recovery included.
The comparison figures depend only on the outputs, so a resumed run reports them identically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from k210.firmware import k210wire as w
from k210.host.cliutil import format_table
from k210.host.metrics import compare, confusion

from .journal import BoardResult

_PAIR_DROP = ("reference_accuracy", "kmodel_accuracy")  # compare()'s names; the report names accuracies itself


def board_outputs(results: dict[int, BoardResult], count: int) -> np.ndarray:
    """Output 0 of every image as float64 [count, values]."""
    rows = [results[i].outputs[0].to_numpy().astype(np.float64).reshape(-1) for i in range(count)]
    return np.stack(rows) if rows else np.zeros((0, 0))


def bit_identical(results: dict[int, BoardResult], simulator: np.ndarray) -> int:
    """Images whose board output 0 has exactly the simulator's float32 bytes."""
    same = 0
    for i in range(len(simulator)):
        t = results[i].outputs[0]
        if t.dtype == w.DT_FLOAT32 and t.data == np.ascontiguousarray(simulator[i], np.float32).tobytes():
            same += 1
    return same


def _pair(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    figures = compare(reference, candidate)
    for key in _PAIR_DROP:
        figures.pop(key, None)
    return figures


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.reshape(len(outputs), -1).argmax(1) == labels).mean()) if len(labels) else 0.0


def link_figures(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the segments of a run (one per invocation; a resumed run has several)."""
    seconds = sum(s["seconds"] for s in segments)
    board_seconds = sum(b["seconds"] for s in segments for b in s["boards"])
    to_board = sum(b["bytes_to_board"] for s in segments for b in s["boards"])
    from_board = sum(b["bytes_from_board"] for s in segments for b in s["boards"])
    images = sum(b["images"] for s in segments for b in s["boards"])
    capacity = sum(b["seconds"] * b["baud"] / 10.0 for s in segments for b in s["boards"])
    return {
        "images_streamed": images,
        "elapsed_s": seconds,
        "images_per_s": images / seconds if seconds > 0 else 0.0,
        "link_utilisation": max(to_board, from_board) / capacity if capacity > 0 else 0.0,
        "utilisation_to_board": to_board / capacity if capacity > 0 else 0.0,
        "utilisation_from_board": from_board / capacity if capacity > 0 else 0.0,
        "bytes_to_board": to_board,
        "bytes_from_board": from_board,
        "board_seconds": board_seconds,
        "retries": sum(b["retries"] for s in segments for b in s["boards"]),
        "resets": sum(b["resets"] for s in segments for b in s["boards"]),
        "resyncs": sum(b.get("resyncs", 0) for s in segments for b in s["boards"]),
        "uploads": sum(b.get("uploads", 0) for s in segments for b in s["boards"]),
        "segments": len(segments),
    }


def build_report(*, kmodel: str, kmodel_sha256: str, reference_path: str | None, dataset: str, split: str,
                 class_names: list[str], labels: np.ndarray, reference: np.ndarray | None, simulator: np.ndarray,
                 results: dict[int, BoardResult], segments: list[dict[str, Any]], boards: list[dict[str, Any]],
                 min_agreement: float) -> dict[str, Any]:
    count = len(simulator)
    board = board_outputs(results, count)
    sim = np.asarray(simulator, np.float64).reshape(count, -1)
    micros = np.array([results[i].micros for i in range(count)], np.float64)
    classes = len(class_names)
    link = link_figures(segments)
    report: dict[str, Any] = {
        "kmodel": kmodel,
        "kmodel_sha256": kmodel_sha256,
        "reference": reference_path,
        "dataset": dataset,
        "split": split,
        "count": count,
        "labels": class_names,
        "board_accuracy": _accuracy(board, labels),
        "simulator_accuracy": _accuracy(sim, labels),
        "board_vs_simulator": {**_pair(sim, board), "bit_identical": bit_identical(results, simulator) / count},
        "confusion": {"board": confusion(labels, board.argmax(1), classes),
                      "simulator": confusion(labels, sim.argmax(1), classes)},
        "latency_us": {
            "median": float(np.median(micros)), "p90": float(np.percentile(micros, 90)),
            "max": float(micros.max()), "mean": float(micros.mean()),
        },
        "images_per_s": link["images_per_s"],
        "link_utilisation": link["link_utilisation"],
        "retries": link["retries"],
        "resets": link["resets"],
        "link": link,
        "boards": boards,
        "min_agreement": min_agreement,
    }
    if reference is not None:
        ref = np.asarray(reference, np.float64).reshape(count, -1)
        report["reference_accuracy"] = _accuracy(ref, labels)
        report["board_vs_reference"] = _pair(ref, board)
        report["simulator_vs_reference"] = _pair(ref, sim)
        report["confusion"]["reference"] = confusion(labels, ref.argmax(1), classes)
    checked = report.get("board_vs_reference", report["board_vs_simulator"])
    report["passed"] = checked["agreement"] >= min_agreement
    return report


# Figures that depend on timing, not on the outputs: they differ between runs of the same test.
TIMING_KEYS = ("images_per_s", "link_utilisation", "retries", "resets", "link", "boards", "latency_us")


def render(r: dict[str, Any]) -> str:
    pairs = [("board vs TF", "board_vs_reference"), ("board vs simulator", "board_vs_simulator"),
             ("simulator vs TF", "simulator_vs_reference")]
    rows = [(name, f"{r[key]['agreement']:.4f}", f"{r[key]['max_abs_error']:.3g}", f"{r[key]['mae']:.3g}",
             f"{r[key]['rmse']:.3g}", f"{r[key]['cosine']:.6f}") for name, key in pairs if key in r]
    lines = [f"{r['kmodel']} on {len(r['boards'])} board(s), {r['count']} {r['dataset']} {r['split']} images",
             format_table(("comparison", "top-1 agreement", "max abs err", "MAE", "RMSE", "cosine"), rows)]
    acc = [("board", r["board_accuracy"]), ("simulator", r["simulator_accuracy"])]
    if "reference_accuracy" in r:
        acc.append(("TF reference", r["reference_accuracy"]))
    lines.append("accuracy: " + ", ".join(f"{name} {value:.4f}" for name, value in acc)
                 + f"; board output bit-identical to the simulator's: {r['board_vs_simulator']['bit_identical']:.2%}")
    names = r["labels"]
    if len(names) <= 12:
        lines.append("board confusion (rows: true, columns: predicted):")
        lines.append(format_table(["", *names], [[names[i], *row] for i, row in enumerate(r["confusion"]["board"])]))
    lat, link = r["latency_us"], r["link"]
    lines.append(f"on-board latency: median {lat['median']:.0f} us, p90 {lat['p90']:.0f} us, max {lat['max']:.0f} us")
    lines.append(f"link: {r['images_per_s']:.1f} images/s, utilisation {r['link_utilisation']:.3f} "
                 f"({link['bytes_to_board']} B to the board, {link['bytes_from_board']} B back in "
                 f"{link['board_seconds']:.2f} board-seconds), retries {r['retries']}, resets {r['resets']}")
    for b in r["boards"]:
        lines.append(f"  {b['port']}: {b['firmware']} {b['fw_version']} ({b['backend']}), {b['images']} images, "
                     f"model checked by {b['identified_by']}")
    checked = "board vs TF" if "board_vs_reference" in r else "board vs simulator"
    agreement = r.get("board_vs_reference", r["board_vs_simulator"])["agreement"]
    lines.append(f"{'PASS' if r['passed'] else 'FAIL'}: {checked} agreement {agreement:.4f} "
                 f"(minimum {r['min_agreement']})")
    return "\n".join(lines)
