"""The figures of a HIL run: board vs TF, board vs simulator, simulator vs TF, latency, the link.

Link utilisation is the busier direction's bytes (host to board, for image models) over what the
line could carry while the boards streamed: bytes ÷ (seconds × baud/10). Every byte counts,
resent ones included, and so does every second, the board's compute and any recovery included.
The comparison figures depend only on the outputs, so a resumed run reports them identically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from k210.core.textfmt import format_table
from k210.firmware import k210wire as w
from k210.host.metrics import compare, confusion, is_class_scores, passes

from .journal import BoardResult

_PAIR_DROP = ("reference_accuracy", "kmodel_accuracy")  # compare()'s names; the report names accuracies itself


def board_outputs(results: dict[int, BoardResult], count: int, output: int = 0) -> np.ndarray:
    """Output `output` of every image as float64 [count, values]."""
    rows = [results[i].outputs[output].to_numpy().astype(np.float64).reshape(-1) for i in range(count)]
    return np.stack(rows) if rows else np.zeros((0, 0))


def outputs_returned(results: dict[int, BoardResult], count: int) -> int:
    """How many outputs the board sent back for every image (CanMV's run_with_output: output 0 only)."""
    return min((len(results[i].outputs) for i in range(count)), default=0)


def bit_identical(results: dict[int, BoardResult], simulator: np.ndarray, output: int = 0) -> int:
    """Images whose board output `output` has exactly the simulator's float32 bytes."""
    same = 0
    for i in range(len(simulator)):
        t = results[i].outputs[output]
        if t.dtype == w.DT_FLOAT32 and t.data == np.ascontiguousarray(simulator[i], np.float32).tobytes():
            same += 1
    return same


def _pair(reference: np.ndarray, candidate: np.ndarray, class_scores: bool = True) -> dict[str, Any]:
    figures = compare(reference, candidate, class_scores=class_scores)
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


def _as_list(outputs: np.ndarray | list[np.ndarray] | None) -> list[np.ndarray] | None:
    if outputs is None:
        return None
    return list(outputs) if isinstance(outputs, list) else [outputs]


def build_report(*, kmodel: str, kmodel_sha256: str, reference_path: str | None, dataset: str, split: str,
                 class_names: list[str], labels: np.ndarray | None, reference: np.ndarray | list[np.ndarray] | None,
                 simulator: np.ndarray | list[np.ndarray], results: dict[int, BoardResult],
                 segments: list[dict[str, Any]], boards: list[dict[str, Any]], min_agreement: float,
                 min_cosine: float = 0.99) -> dict[str, Any]:
    """Every output compared, board vs simulator vs TF; the headline figures are the primary output's
    (the first with class scores, else output 0). `simulator` and `reference`: one array per output."""
    sims = [np.asarray(o, np.float64) for o in _as_list(simulator) or []]
    refs = _as_list(reference)
    count = len(sims[0])
    sims = [o.reshape(count, -1) for o in sims]
    refs = None if refs is None else [np.asarray(o, np.float64).reshape(count, -1) for o in refs]
    returned = outputs_returned(results, count)
    classes = len(class_names) if class_names else None
    micros = np.array([results[i].micros for i in range(count)], np.float64)
    link = link_figures(segments)
    per_output: list[dict[str, Any]] = []
    for k, sim in enumerate(sims):
        scores = is_class_scores(sim.shape[1:], classes, None if refs is None else refs[k])
        row: dict[str, Any] = {"output": k, "values": int(sim.shape[1]), "class_scores": scores,
                               "on_board": k < returned}
        if k < returned:
            board = board_outputs(results, count, k)
            row["board_vs_simulator"] = {**_pair(sim, board, scores),
                                         "bit_identical": bit_identical(results, sim, k) / count}
            if refs is not None:
                row["board_vs_reference"] = _pair(refs[k], board, scores)
        if refs is not None:
            row["simulator_vs_reference"] = _pair(refs[k], sim, scores)
        checked = row.get("board_vs_reference", row.get("board_vs_simulator", row.get("simulator_vs_reference")))
        # Nothing to compare (not sent back by the board, no TF): reported as such, not counted as a failure.
        row["compared"] = checked is not None
        row["passed"] = checked is None or passes(checked, min_agreement, min_cosine)
        per_output.append(row)
    primary = next((r for r in per_output if r["class_scores"] and r["on_board"]), per_output[0])
    k = primary["output"]
    with_labels = labels is not None and primary["class_scores"] and classes is not None
    board = board_outputs(results, count, k) if primary["on_board"] else np.zeros((count, sims[k].shape[1]))
    report: dict[str, Any] = {
        "kmodel": kmodel,
        "kmodel_sha256": kmodel_sha256,
        "reference": reference_path,
        "dataset": dataset,
        "split": split,
        "count": count,
        "labels": class_names,
        "primary_output": k,
        "outputs_compared": len(sims),
        "board_outputs_returned": returned,
        "outputs": per_output,
        "board_vs_simulator": primary.get("board_vs_simulator", {}),
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
        "min_cosine": min_cosine,
    }
    if with_labels:
        assert labels is not None and classes is not None
        report["board_accuracy"] = _accuracy(board, labels)
        report["simulator_accuracy"] = _accuracy(sims[k], labels)
        report["confusion"] = {"board": confusion(labels, board.argmax(1), classes),
                               "simulator": confusion(labels, sims[k].argmax(1), classes)}
    if refs is not None:
        report["board_vs_reference"] = primary.get("board_vs_reference", {})
        report["simulator_vs_reference"] = primary["simulator_vs_reference"]
        if with_labels:
            assert labels is not None and classes is not None
            report["reference_accuracy"] = _accuracy(refs[k], labels)
            report["confusion"]["reference"] = confusion(labels, refs[k].argmax(1), classes)
    report["passed"] = all(r["passed"] for r in per_output)
    return report


# Figures that depend on timing, not on the outputs: they differ between runs of the same test.
TIMING_KEYS = ("images_per_s", "link_utilisation", "retries", "resets", "link", "boards", "latency_us",
               "journal")  # how much a resume found depends on when the run was stopped


def _row(name: str, f: dict[str, Any]) -> tuple[str, ...]:
    agreement = f"{f['agreement']:.4f}" if "agreement" in f else "-"
    return (name, agreement, f"{f['max_abs_error']:.3g}", f"{f['mae']:.3g}", f"{f['rmse']:.3g}",
            f"{f['cosine']:.6f}", f"{f['nse']:.4f}" if "nse" in f else "-")


def render(r: dict[str, Any]) -> str:
    pairs = [("board vs TF", "board_vs_reference"), ("board vs simulator", "board_vs_simulator"),
             ("simulator vs TF", "simulator_vs_reference")]
    many = len(r["outputs"]) > 1
    rows = [_row(f"{name}, output {o['output']}" if many else name, o[key])
            for o in r["outputs"] for name, key in pairs if key in o]
    lines = [f"{r['kmodel']} on {len(r['boards'])} board(s), {r['count']} {r['dataset']} {r['split']} inputs",
             format_table(("comparison", "top-1 agreement", "max abs err", "MAE", "RMSE", "cosine", "NSE"), rows)]
    if r["board_outputs_returned"] < r["outputs_compared"]:
        rest = ("compared simulator vs TF" if "simulator_vs_reference" in r
                else "not compared (no TF reference either)")
        lines.append(f"the board returned {r['board_outputs_returned']} of {r['outputs_compared']} outputs "
                     f"(CanMV's run_with_output gives output 0 only): the others are {rest}")
    acc = [(name, r[key]) for name, key in (("board", "board_accuracy"), ("simulator", "simulator_accuracy"),
                                            ("TF reference", "reference_accuracy")) if key in r]
    identical = r["board_vs_simulator"].get("bit_identical") if r["board_vs_simulator"] else None
    parts = []
    if acc:
        parts.append("accuracy: " + ", ".join(f"{name} {value:.4f}" for name, value in acc))
    if identical is not None:
        parts.append(f"board output bit-identical to the simulator's: {identical:.2%}")
    if parts:
        lines.append("; ".join(parts))
    names = r["labels"]
    if "confusion" in r and len(names) <= 12:
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
        troubles = board_troubles(b)
        if troubles:
            lines.append(f"    {troubles}")
    resumed = r.get("journal") or {}
    if resumed:
        dropped = resumed["damaged_lines_dropped"]
        lines.append(f"journal: {resumed['resumed_results']} results resumed"
                     + (f", {dropped} damaged lines dropped (their images run again)" if dropped else ""))
    checked = "board vs TF" if "board_vs_reference" in r else "board vs simulator"
    head = r.get("board_vs_reference") or r["board_vs_simulator"]
    figure = (f"agreement {head['agreement']:.4f} (minimum {r['min_agreement']})" if "agreement" in head
              else f"cosine {head['cosine']:.6f} (minimum {r['min_cosine']})")
    lines.append(f"{'PASS' if r['passed'] else 'FAIL'}: {checked} {figure}"
                 + (f", {r['outputs_compared']} outputs compared" if many else ""))
    return "\n".join(lines)


def board_troubles(b: dict[str, Any]) -> str:
    """What the line and the board's card did on this board, where anything happened."""
    parts = []
    if b.get("waits"):
        parts.append(f"waited for the board {_times(b['waits'])} "
                     f"({b['waited_s']:.1f} s, longest {b['longest_wait_s']:.1f} s)")
    if b.get("reopens"):
        parts.append(f"port reopened {_times(b['reopens'])} (after {b['reopen_waited_s']:.1f} s)")
    samples = b.get("samples") or {}
    if samples.get("zlib") or samples.get("cached"):
        parts.append(f"samples: {samples['zlib']} as zlib, {samples['cached']} by hash ({samples['hits']} found, "
                     f"{samples['damaged']} damaged), {samples['kept']} kept on the board")
    return "; ".join(parts)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def failure_line(r: dict[str, Any]) -> str:
    """Which outputs failed, and on what figure."""
    parts = []
    for o in r["outputs"]:
        if o["passed"]:
            continue
        key = next(k for k in ("board_vs_reference", "board_vs_simulator", "simulator_vs_reference") if k in o)
        f = o[key]
        what = key.replace("_vs_", " vs ").replace("reference", "TF")
        parts.append(f"output {o['output']} {what} top-1 agreement {f['agreement']:.4f} is below {r['min_agreement']}"
                     if "agreement" in f else f"output {o['output']} {what} cosine {f['cosine']:.4f} is below "
                     f"{r['min_cosine']}")
    return "; ".join(parts) or "the check failed"
