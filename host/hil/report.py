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
from k210.host.judge.render import tasks_lines
from k210.host.metrics import compare, confusion

from .journal import BoardResult

_PAIR_DROP = ("reference_accuracy", "kmodel_accuracy")  # compare()'s names; the report names accuracies itself


def board_outputs(results: dict[int, BoardResult], count: int, output: int = 0) -> np.ndarray:
    """Output `output` of every image as float64 [count, values]."""
    rows = [results[i].outputs[output].to_numpy().astype(np.float64).reshape(-1) for i in range(count)]
    return np.stack(rows) if rows else np.zeros((0, 0))


def outputs_returned(results: dict[int, BoardResult], count: int) -> int:
    """How many outputs the board sent back for every image (CanMV's run_with_output: output 0 only)."""
    return min((len(results[i].outputs) for i in range(count)), default=0)


_NUMPY = {w.DT_FLOAT32: np.float32, w.DT_UINT8: np.uint8, w.DT_INT8: np.int8, w.DT_INT32: np.int32}


def bit_identical(results: dict[int, BoardResult], simulator: np.ndarray, output: int = 0,
                  dtype: int = w.DT_FLOAT32) -> int:
    """Images whose board output `output` has exactly the simulator's bytes, in the kmodel's output dtype."""
    same = 0
    numpy_type = _NUMPY.get(dtype)
    for i in range(len(simulator)):
        outs = results[i].outputs
        if output >= len(outs) or numpy_type is None:
            continue
        t = outs[output]
        if t.dtype == dtype and t.data == np.ascontiguousarray(simulator[i]).astype(numpy_type).tobytes():
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


def _structure(results: dict[int, BoardResult], count: int, output: int, dtype: int, values: int
               ) -> tuple[int, list[str]]:
    """(images that brought output `output` back well-formed, what was wrong with the others)."""
    missing, wrong_dtype, wrong_size = [], [], []
    for i in range(count):
        outs = results[i].outputs
        if output >= len(outs):
            missing.append(i)
        elif outs[output].dtype != dtype:
            wrong_dtype.append((i, outs[output].dtype))
        elif len(outs[output].data) != w.tensor_nbytes(dtype, (values,)):
            wrong_size.append((i, len(outs[output].data)))
    problems = []
    name = w.DTYPE_NAMES.get(dtype, str(dtype))
    if wrong_dtype:
        i, got = wrong_dtype[0]
        problems.append(f"{len(wrong_dtype)} images came back as {w.DTYPE_NAMES.get(got, got)}, the kmodel's output "
                        f"is {name} (first: image {i})")
    if wrong_size:
        i, got = wrong_size[0]
        problems.append(f"{len(wrong_size)} images came back with {got} bytes, the kmodel's output has "
                        f"{w.tensor_nbytes(dtype, (values,))} (first: image {i})")
    return count - len(missing) - len(wrong_dtype) - len(wrong_size), problems + (
        [f"{len(missing)} images came back without it (first: image {missing[0]})"] if missing and len(missing) < count
        else [])


def _firmwares(results: dict[int, BoardResult], boards: list[dict[str, Any]], count: int) -> str:
    by_port = {b["port"]: f"{b.get('firmware') or 'its firmware'}" for b in boards}
    names = sorted({by_port.get(results[i].board, "its firmware") for i in range(count)})
    return " / ".join(names) or "its firmware"


def build_report(*, kmodel: str, kmodel_sha256: str, reference_path: str | None, dataset: str, split: str,
                 class_names: list[str], labels: np.ndarray | None, reference: np.ndarray | list[np.ndarray] | None,
                 simulator: np.ndarray | list[np.ndarray], results: dict[int, BoardResult],
                 segments: list[dict[str, Any]], boards: list[dict[str, Any]], min_agreement: float,
                 min_cosine: float = 0.99, output_dtypes: list[int] | None = None, rules: Any = None,
                 check_data: dict[str, Any] | None = None, card: dict | None = None) -> dict[str, Any]:
    """Every output compared, board vs simulator vs TF, and judged (docs/pass-rules.md):
    - every output of the kmodel must come back for every image, with its dtype and element count;
    - board vs simulator: bit identity within the allowance of host.judge.identity, image by image;
    - board vs TF (or vs the simulator without TF): the output's pass rule, and the decoded task.
    `simulator` and `reference`: one array per output; `output_dtypes`: the kmodel's (k210wire codes)."""
    from k210.host.judge.identity import board_vs_simulator
    from k210.host.judge.verdict import RuleFlags, judge_all, rule_set

    sims = [np.asarray(o, np.float64) for o in _as_list(simulator) or []]
    refs = _as_list(reference)
    count = len(sims[0])
    sims = [o.reshape(count, -1) for o in sims]
    refs = None if refs is None else [np.asarray(o, np.float64).reshape(count, -1) for o in refs]
    dtypes = list(output_dtypes) if output_dtypes is not None else [w.DT_FLOAT32] * len(sims)
    expected = refs if refs is not None else sims
    if rules is None:
        rules = rule_set(RuleFlags(min_agreement=min_agreement, min_cosine=min_cosine), card or {}, expected,
                         class_names)
    returned = outputs_returned(results, count)
    firmware = _firmwares(results, boards, count)
    micros = np.array([results[i].micros for i in range(count)], np.float64)
    link = link_figures(segments)
    per_output: list[dict[str, Any]] = []
    reasons: list[str] = []
    boards_out: list[np.ndarray] = []
    for k, sim in enumerate(sims):
        rule = rules.rules[k]
        good, problems = _structure(results, count, k, dtypes[k], sim.shape[1])
        row: dict[str, Any] = {"output": k, "values": int(sim.shape[1]), "class_scores": rule.kind == "scores",
                               "dtype": w.DTYPE_NAMES.get(dtypes[k], str(dtypes[k])), **rule.to_dict(),
                               "on_board": good == count, "returned_images": good}
        if refs is not None:
            row["simulator_vs_reference"] = _pair(refs[k], sim, rule.kind == "scores")
        if good == 0 and not problems:
            row["not_returned"] = f"not returned ({firmware} did not send it)"
        if good < count:
            why = row.get("not_returned") or "; ".join(problems)
            if rule.checked:
                reasons.append(f"output {k}: {why}" + ("; name the outputs to check with --outputs" if good == 0
                                                       else ""))
            row["board_problems"] = problems
            boards_out.append(sim)  # placeholder, never judged: the structure failed
            row["passed"] = not rule.checked
            per_output.append(row)
            continue
        board = board_outputs(results, count, k)
        boards_out.append(board)
        identity = board_vs_simulator(board, sim, row["dtype"])
        row["board_vs_simulator"] = {**_pair(sim, board, rule.kind == "scores"),
                                     "bit_identical": bit_identical(results, sim, k, dtypes[k]) / count, **identity}
        if identity["images_beyond_count"] and rule.checked:
            worst = identity["worst"]
            steps = f" = {worst['in_steps']:.1f} steps" if worst.get("in_steps") else ""
            reasons.append(f"output {k}: the board differs from the simulator beyond {identity['allowance']} on "
                           f"{identity['images_beyond_count']} of {count} images (first: "
                           f"{', '.join(map(str, identity['images_beyond'][:5]))}; worst: image {worst['image']}, "
                           f"off by {worst['max_difference']:.4g}{steps})")
        if refs is not None:
            row["board_vs_reference"] = _pair(refs[k], board, rule.kind == "scores")
        per_output.append(row)
    structural_ok = all(r.get("on_board") or not r["checked"] for r in per_output)
    judgement = None
    if structural_ok:
        shapes = [[r["values"]] for r in per_output]
        if rules.postprocess:  # decoders need the kmodel's own output shapes
            shapes = [list(s) for s in _output_shapes(card, per_output)]
        judgement = judge_all(expected, boards_out, rules, shapes=shapes, labels=None, class_names=class_names)
        for row, judged in zip(per_output, judgement.outputs):
            row["judged"] = {key: judged[key] for key in ("passed", "reasons", "limits", "uninformative", "note")
                             if key in judged}
            if "output_step" in judged:
                row["judged"]["output_step"] = judged["output_step"]
        reasons += judgement.reasons()
    for row in per_output:
        row["passed"] = not any(r.startswith(f"output {row['output']}:") for r in reasons) and row.get(
            "passed", True)
        row["compared"] = True
    scored = [r for r in per_output if r["class_scores"] and r["on_board"]]
    primary = scored[0] if scored else per_output[0]
    k = primary["output"]
    with_labels = labels is not None and primary["class_scores"] and classes_match(class_names, sims[k])
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
        "tasks": judgement.tasks if judgement else [],
        "rules": rules.to_dict(),
        "check_data": check_data,
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
        assert labels is not None
        classes = sims[k].shape[1]
        report["board_accuracy"] = _accuracy(board, labels)
        report["simulator_accuracy"] = _accuracy(sims[k], labels)
        report["confusion"] = {"board": confusion(labels, board.argmax(1), classes),
                               "simulator": confusion(labels, sims[k].argmax(1), classes)}
    if refs is not None:
        report["board_vs_reference"] = primary.get("board_vs_reference", {})
        report["simulator_vs_reference"] = primary["simulator_vs_reference"]
        if with_labels:
            assert labels is not None
            report["reference_accuracy"] = _accuracy(refs[k], labels)
            report["confusion"]["reference"] = confusion(labels, refs[k].argmax(1), sims[k].shape[1])
    report["reasons"] = reasons
    report["passed"] = not reasons
    return report


def classes_match(class_names: list[str], outputs: np.ndarray) -> bool:
    return bool(class_names) and len(class_names) == outputs.shape[1]


def _output_shapes(card: dict | None, per_output: list[dict[str, Any]]) -> list[list[int]]:
    """Per output, its shape without the batch (the card's, else flat)."""
    carded = [o.get("shape") for o in (card or {}).get("outputs") or []]
    shapes = []
    for i, row in enumerate(per_output):
        shape = carded[i] if i < len(carded) and carded[i] else None
        shapes.append(list(shape[1:]) if shape and int(np.prod(shape[1:])) == row["values"] else [row["values"]])
    return shapes


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
    for o in r["outputs"]:
        if o.get("board_problems") or o.get("not_returned"):
            what = o.get("not_returned") or "; ".join(o["board_problems"])
            lines.append(f"output {o['output']}: {what}" + ("" if o["checked"] else " (not checked: --outputs)"))
    lines += tasks_lines(r.get("tasks") or [])
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
                     f"model checked by {b['identified_by']}"
                     + (f"; FAILED after {b['failed_after_images']} images: {b['error']}"
                        if b.get("fate") == "failed" else ""))
        troubles = board_troubles(b)
        if troubles:
            lines.append(f"    {troubles}")
    resumed = r.get("journal") or {}
    if resumed:
        dropped = resumed["damaged_lines_dropped"]
        lines.append(f"journal: {resumed['resumed_results']} results resumed"
                     + (f", {dropped} damaged lines dropped (their images run again)" if dropped else ""))
    for reason in r.get("reasons") or []:
        lines.append(f"  why: {reason}")
    verdict, lost = verdict_line(r), lost_boards_line(r, errors=False)
    lines.append(verdict + (f"; {lost}" if lost and lost not in verdict else ""))
    return "\n".join(lines)


def verdict_line(r: dict[str, Any]) -> str:
    """PASS/FAIL with the deciding figures (board vs TF, else vs the simulator) and what the check ran on."""
    from k210.host.judge.render import headline
    from k210.host.verifying import check_data_phrase

    what = "board vs TF:" if r.get("reference") else "board vs simulator:"
    judged = {**r, "outputs": [_judged_view(o) for o in r["outputs"]]}
    return headline(judged, what) + check_data_phrase(r.get("check_data"))


def _judged_view(o: dict[str, Any]) -> dict[str, Any]:
    """One output's row as the verdict line reads it: the board vs TF (else simulator) figures and its rule."""
    figures = o.get("board_vs_reference") or o.get("board_vs_simulator") or o.get("simulator_vs_reference") or {}
    judged = o.get("judged") or {}
    return {**figures, "output": o["output"], "kind": o["kind"], "limits": judged.get("limits", {}),
            "note": judged.get("note") or ("" if o["checked"] else "not checked (--outputs)")}


def lost_boards_line(r: dict[str, Any], errors: bool = True) -> str:
    """Which boards were given up mid-run, after how many images (the others ran their images), and why."""
    lost = [b for b in r.get("boards", []) if b.get("fate") == "failed"]
    if not lost:
        return ""
    which = ", ".join(f"{b['port']} failed after {b['failed_after_images']} images"
                      + (f" ({b['error']})" if errors else "") for b in lost)
    verdict = "the run fails" if r.get("lost_boards_fail") else "allowed by --allow-lost-boards"
    return f"{len(lost)} of {len(r['boards'])} boards lost: {which}; {verdict}"


def board_troubles(b: dict[str, Any]) -> str:
    """What the line and the board's card did on this board, where anything happened."""
    parts = []
    if b.get("waits"):
        parts.append(f"waited for the board {_times(b['waits'])} "
                     f"({b['waited_s']:.1f} s, longest {b['longest_wait_s']:.1f} s)")
    if b.get("reopens"):
        parts.append(f"port reopened {_times(b['reopens'])} (after {b['reopen_waited_s']:.1f} s)")
    damaged = _damaged_share(b.get("arrived") or {})
    if damaged >= 0.01:
        a = b["arrived"]
        parts.append(f"the line damaged {100 * damaged:.0f} % of the frames from the board ({a['bad_crc']} bad CRC, "
                     f"{a['bad_cobs']} COBS errors, {a['cut']} cut)")
    failed_tries = b.get("reopen_tries", 0) - b.get("reopens", 0)
    if failed_tries > 0:
        parts.append(f"{failed_tries} failed {'try' if failed_tries == 1 else 'tries'} to reopen its port")
    samples = b.get("samples") or {}
    if samples.get("zlib") or samples.get("cached"):
        parts.append(f"samples: {samples['zlib']} as zlib, {samples['cached']} by hash ({samples['hits']} found, "
                     f"{samples['damaged']} damaged), {samples['kept']} kept on the board")
    return "; ".join(parts)


def _damaged_share(a: dict[str, int]) -> float:
    damaged = a.get("bad_crc", 0) + a.get("bad_cobs", 0) + a.get("cut", 0)
    return damaged / (damaged + a["frames"]) if damaged else 0.0


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def failure_line(r: dict[str, Any]) -> str:
    """Why the run failed, every reason on one line."""
    return "; ".join(r.get("reasons") or []) or "the check failed"
