"""Expected outputs from a second, trusted board (`k210 hil --golden-board-cmd/--golden-port`).

Where the kmodel cannot run in nncase's simulator (the C runner's arithmetic stand-in for the KPU, a
kmodel this host cannot parse), the board under test is compared with a golden board given the same
images: output by output, images with bit-identical bytes, max abs error and mean cosine
(host/metrics.py). An output passes when every image is bit-identical where both boards send the same
dtype, else when its mean cosine reaches --min-cosine.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import numpy as np

from k210.core.errors import BadInputError
from k210.firmware import k210wire as w
from k210.host.metrics import compare

from .journal import BoardResult
from .model import KModel
from .report import link_figures

UNPARSED_VERSION_AT = 4  # "LDMK" + u32 version (v4, v5); v3 starts with the u32 itself


def unparsed_kmodel(path: str, data: bytes) -> KModel:
    """A kmodel this host cannot parse: its hash and header version; its tensors come from the golden board."""
    import hashlib

    if len(data) < 8:
        raise BadInputError(f"{path} is not a kmodel: {len(data)} bytes")
    version = struct.unpack_from("<I", data, UNPARSED_VERSION_AT if data[:4] == b"LDMK" else 0)[0]
    return KModel(path, data, hashlib.sha256(data).hexdigest(), version, (), ())


def with_board_tensors(kmodel: KModel, info: Any) -> KModel:
    """`kmodel` with the tensors the golden board reports for it (its MODEL_INFO)."""
    inputs = tuple((d.dtype, tuple(d.shape)) for d in info.inputs)
    if not inputs:
        raise BadInputError(f"{kmodel.path}: neither this host nor the golden board can tell its input tensor")
    return dataclasses.replace(kmodel, inputs=inputs, outputs=tuple((d.dtype, tuple(d.shape)) for d in info.outputs))


def input_desc(kmodel: KModel) -> Any:
    """The kmodel's input as converters.kmodel describes it (batch first), from the board-reported tensors."""
    from k210.converters.kmodel import TensorDesc

    dtype, shape = kmodel.inputs[0]
    return TensorDesc(w.DTYPE_NAMES.get(dtype), [1, *shape], w.tensor_nbytes(dtype, shape))


def outputs_of(results: dict[int, BoardResult], count: int) -> list[np.ndarray]:
    """Every output a board returned for every image, as float64 [count, values] (for --save-io)."""
    returned = min((len(results[i].outputs) for i in range(count)), default=0)
    return [np.stack([results[i].outputs[k].to_numpy().astype(np.float64).reshape(-1) for i in range(count)])
            for k in range(returned)]


def compare_output(board: dict[int, BoardResult], golden: dict[int, BoardResult], count: int, k: int,
                   min_cosine: float) -> dict[str, Any]:
    """Output `k` of the board against the golden board's, image by image."""
    dtypes = {(board[i].outputs[k].dtype, golden[i].outputs[k].dtype) for i in range(count)}
    same_dtype = all(b == g for b, g in dtypes)
    # The same bytes under other dims (or another dtype) are another tensor: never identical.
    shapes_differ = [i for i in range(count) if tuple(board[i].outputs[k].shape) != tuple(golden[i].outputs[k].shape)]
    identical = sum(board[i].outputs[k].dtype == golden[i].outputs[k].dtype
                    and tuple(board[i].outputs[k].shape) == tuple(golden[i].outputs[k].shape)
                    and board[i].outputs[k].data == golden[i].outputs[k].data for i in range(count))
    figures = compare(*(np.stack([r[i].outputs[k].to_numpy().astype(np.float64).reshape(-1) for i in range(count)])
                        for r in (golden, board)), class_scores=False)
    row = {"output": k, "dtype": "/".join(sorted({w.DTYPE_NAMES.get(d, str(d)) for pair in dtypes for d in pair})),
           "same_dtype": same_dtype, "images": count, "bit_identical": identical,
           "max_abs_error": figures["max_abs_error"], "mae": figures["mae"], "cosine": figures["cosine"]}
    row["shapes_differ"] = len(shapes_differ)
    row["passed"] = (identical == count if same_dtype else figures["cosine"] >= min_cosine) and not shapes_differ
    return row


def build_golden_report(*, kmodel: str, kmodel_sha256: str, dataset: str, split: str,
                        results: dict[int, BoardResult], golden: dict[int, BoardResult], count: int,
                        segments: list[dict[str, Any]], golden_boards: list[dict[str, Any]],
                        min_cosine: float, expected_outputs: int = 0) -> dict[str, Any]:
    """The run's figures, board vs golden board for every output both returned; both must return every
    one of the kmodel's `expected_outputs` (0: as many as the golden board returns)."""
    per_board = min((len(results[i].outputs) for i in range(count)), default=0)
    per_golden = min((len(golden[i].outputs) for i in range(count)), default=0)
    rows = [compare_output(results, golden, count, k, min_cosine) for k in range(min(per_board, per_golden))]
    micros = np.array([results[i].micros for i in range(count)], np.float64)
    link = link_figures(segments)
    return {
        "kmodel": kmodel, "kmodel_sha256": kmodel_sha256, "reference": None, "dataset": dataset, "split": split,
        "count": count, "expected": "golden board",
        "golden": {"boards": golden_boards, "outputs_returned": per_golden},
        "board_outputs_returned": per_board, "outputs_compared": len(rows), "outputs": rows,
        "latency_us": {"median": float(np.median(micros)), "p90": float(np.percentile(micros, 90)),
                       "max": float(micros.max()), "mean": float(micros.mean())},
        "images_per_s": link["images_per_s"], "link_utilisation": link["link_utilisation"],
        "retries": link["retries"], "resets": link["resets"], "link": link,
        "boards": segments[-1]["boards"] if segments else [], "min_cosine": min_cosine,
        # Both boards must send every output of the kmodel, and every one must match.
        "expected_outputs": expected_outputs or per_golden,
        "passed": per_board == per_golden >= max(1, expected_outputs) and bool(rows) and all(r["passed"] for r in rows),
    }


def render_golden(r: dict[str, Any]) -> str:
    from k210.core.textfmt import format_table

    rows = [(f"output {o['output']}", o["dtype"], f"{o['bit_identical']}/{o['images']}",
             f"{o['max_abs_error']:.3g}", f"{o['cosine']:.6f}", "ok" if o["passed"] else "FAIL")
            for o in r["outputs"]]
    golden = ", ".join(f"{b['port']} ({b['firmware']} {b['backend']})" for b in r["golden"]["boards"])
    lines = [f"{r['kmodel']} on {len(r['boards'])} board(s) vs golden board {golden}, {r['count']} "
             f"{r['dataset']} {r['split']} inputs",
             format_table(("board vs golden", "dtype", "bit-identical", "max abs err", "cosine", ""), rows)]
    lat = r["latency_us"]
    lines.append(f"on-board latency: median {lat['median']:.0f} us, p90 {lat['p90']:.0f} us; "
                 f"link: {r['images_per_s']:.1f} images/s, retries {r['retries']}, resets {r['resets']}")
    lines.append(f"{'PASS' if r['passed'] else 'FAIL'}: board vs golden board, {r['outputs_compared']} outputs "
                 f"compared over {r['count']} images")
    return "\n".join(lines)


def golden_failure_line(r: dict[str, Any]) -> str:
    expected = r.get("expected_outputs") or 0
    if min(r["board_outputs_returned"], r["golden"]["outputs_returned"]) < max(1, expected):
        return (f"the kmodel has {expected} output(s); the board returned {r['board_outputs_returned']}, the golden "
                f"board {r['golden']['outputs_returned']}: no output, no pass")
    if r["board_outputs_returned"] != r["golden"]["outputs_returned"]:
        return (f"the board returned {r['board_outputs_returned']} outputs, the golden board "
                f"{r['golden']['outputs_returned']}")
    shaped = [o for o in r["outputs"] if o.get("shapes_differ")]
    if shaped:
        o = shaped[0]
        return (f"output {o['output']}: the board's tensor has other dims than the golden board's on "
                f"{o['shapes_differ']} of {o['images']} images")
    return "; ".join(f"output {o['output']} bit-identical on {o['bit_identical']} of {o['images']} images"
                     + ("" if o["same_dtype"] else f", cosine {o['cosine']:.4f} below {r['min_cosine']}")
                     for o in r["outputs"] if not o["passed"]) or "the check failed"
