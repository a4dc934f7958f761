"""Lint against nncase 1.9 on single-operator ONNX graphs (`python -m benchmarks.onnx_single_ops`).

The graphs are onnx's own backend node tests (onnx.backend.test.case.node, the generators of
onnx/backend/test/data/node/*/model.onnx), kept where the graph is one node of an op nncase 1.9
imports and its first input is a float32 tensor. Every other input is frozen to a constant with the
test's own values, as an exporter writes weights and shapes. nncase compiles each graph (uint8 PTQ,
calibrated on the test's own input) in a child process with a timeout, since it segfaults on some;
its results are cached under --out/cache by the graph's hash. Lint's verdict on the same file is
set beside it: a miss is lint saying "no problems" where nncase fails, a false alarm the reverse.

    python -m benchmarks.onnx_single_ops [--only SUBSTRING] [--out out/bench/onnx_single_ops]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

TIMEOUT_S = 120


# Ops whose second and later inputs (shapes, axes, indices, slopes) nncase 1.9 needs as constants: each of
# their node tests runs a second time with those inputs left as graph inputs (name suffix "_live").
LIVE_OPS = frozenset({"Reshape", "Resize", "Pad", "Slice", "Tile", "Expand", "TopK", "InstanceNormalization",
                      "Unsqueeze", "PRelu", "Gather"})


def graphs(only: str | None = None) -> list[tuple[str, bytes, np.ndarray]]:
    """(test name, frozen model bytes, calibration input) for every single-op graph nncase imports."""
    import warnings

    from onnx import numpy_helper
    from onnx.backend.test.case.node import collect_testcases

    from k210.converters.optables import NNCASE19_ONNX_OPS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own overflow warnings
        cases = collect_testcases("")
    found = []
    for case in cases:
        model = case.model
        if model is None or not case.data_sets or len(model.graph.node) != 1:
            continue
        if only and only not in case.name:
            continue
        node = model.graph.node[0]
        if node.op_type not in NNCASE19_ONNX_OPS:
            continue
        inputs = [numpy_helper.to_array(x) if hasattr(x, "raw_data") else x for x in case.data_sets[0][0]]
        first = model.graph.input[0] if model.graph.input else None
        if first is None or not inputs or first.type.tensor_type.elem_type != 1:  # FLOAT
            continue
        data = np.asarray(inputs[0])
        if data.ndim == 0 or 0 in data.shape:
            continue
        frozen = _freeze(model, inputs, numpy_helper)
        if frozen is not None:
            found.append((case.name, frozen, data.astype(np.float32)))
        if node.op_type in LIVE_OPS and len(model.graph.input) > 1:
            found.append((f"{case.name}_live", model.SerializeToString(), data.astype(np.float32)))
    return found + [graph for graph in _helper_graphs() if not only or only in graph[0]]


def _helper_graphs() -> list[tuple[str, bytes, np.ndarray]]:
    """Patterns the node tests lack, built with onnx.helper: Casts from float32 to the integer types, GatherND,
    and ConvTranspose in the shapes the TFLite path lowers to the KPU."""
    from onnx import TensorProto, helper

    found = []
    for target in ("INT8", "UINT8", "INT16", "INT32", "INT64", "BOOL", "FLOAT"):
        node = helper.make_node("Cast", ["x"], ["y"], to=getattr(TensorProto, target))
        graph = helper.make_graph([node], "cast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                                  [helper.make_tensor_value_info("y", getattr(TensorProto, target), [1, 3, 8, 8])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        calibration = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32) * 4
        found.append((f"helper_cast_FLOAT_to_{target}", model.SerializeToString(), calibration))
    # GatherND on float data: the node tests have one such graph, without batch_dims.
    gathers = (("i212", [[[0, 1]], [[1, 0]]], {}), ("i212_batch_dims_0", [[[0, 1]], [[1, 0]]], {"batch_dims": 0}),
               ("i22_batch_dims_0", [[0, 1], [1, 0]], {"batch_dims": 0}),
               ("i21_batch_dims_0", [[1], [0]], {"batch_dims": 0}))
    for name, indices, attrs in gathers:
        node = helper.make_node("GatherND", ["x", "i"], ["y"], **attrs)
        data = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 2])
        graph = helper.make_graph([node], "gathernd", [data],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  initializer=[helper.make_tensor("i", TensorProto.INT64, np.shape(indices),
                                                                  np.ravel(indices).tolist())])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        calibration = np.random.default_rng(0).random((2, 2, 2), dtype=np.float32)
        found.append((f"helper_gathernd_{name}", model.SerializeToString(), calibration))
    # ConvTranspose in the shapes TFLite's K210 pass lowers to pad + KPU conv (stride 1, same size).
    for kernel in (1, 3):
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[kernel, kernel],
                                pads=[kernel // 2] * 4)
        weights = np.random.default_rng(0).standard_normal((4, 8, kernel, kernel)).astype(np.float32)
        data = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
        graph = helper.make_graph([node], "deconv", [data],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  initializer=[helper.make_tensor("w", TensorProto.FLOAT, weights.shape,
                                                                  weights.ravel().tolist())])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        calibration = np.random.default_rng(0).random((1, 4, 8, 8), dtype=np.float32)
        found.append((f"helper_convtranspose_{kernel}x{kernel}_stride1_same", model.SerializeToString(), calibration))
    return found


def _freeze(model, inputs: list, numpy_helper) -> bytes | None:
    """The model with every input but the first as an initializer holding the test's value."""
    import onnx

    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    graph = frozen.graph
    if len(graph.input) != len(inputs):
        return None
    for value, array in zip(list(graph.input)[1:], inputs[1:]):
        if not isinstance(array, (np.ndarray, np.generic)):
            return None  # sequences and optionals: not a tensor an exporter freezes
        graph.initializer.append(numpy_helper.from_array(np.asarray(array), value.name))
    keep = graph.input[0]
    del graph.input[:]
    graph.input.append(keep)
    return frozen.SerializeToString()


def nncase_result(model: bytes, calibration: np.ndarray, cache: Path) -> dict:
    """nncase 1.9's verdict on one graph: {"ok": bool, "error": str | None}, cached by the graph's hash."""
    key = hashlib.sha1(model + calibration.tobytes()).hexdigest()
    cached = cache / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    with tempfile.TemporaryDirectory(prefix="onnx_op_") as tmp:
        work = Path(tmp)
        (work / "model.onnx").write_bytes(model)
        np.save(work / "calibration.npy", calibration)
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.onnx_single_ops", "--worker", str(work)],
                                  capture_output=True, text=True, timeout=TIMEOUT_S,
                                  cwd=Path(__file__).resolve().parents[1])
        except subprocess.TimeoutExpired:
            result = {"ok": False, "error": f"no result within {TIMEOUT_S} s"}
        else:
            result_file = work / "result.json"
            if result_file.is_file():
                result = json.loads(result_file.read_text())
            elif proc.returncode < 0:
                result = {"ok": False, "error": f"crashed ({signal.Signals(-proc.returncode).name})"}
            else:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                result = {"ok": False, "error": f"exit {proc.returncode}: {tail[:200]}"}
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    return result


def _worker(work: Path) -> int:
    """Child process: compile model.onnx for the K210 with uint8 PTQ; write result.json."""
    import nncase

    os.chdir(work)  # nncase writes kmodel_info.txt into the current directory: keep it out of the checkout
    calibration = np.load(work / "calibration.npy")
    try:
        options = nncase.CompileOptions()
        options.target = "k210"
        options.quant_type = "uint8"
        options.w_quant_type = "uint8"
        options.input_type = "float32"
        compiler = nncase.Compiler(options)
        compiler.import_onnx((work / "model.onnx").read_bytes(), nncase.ImportOptions())
        ptq = nncase.PTQTensorOptions()
        ptq.samples_count = 1
        ptq.set_tensor_data(np.ascontiguousarray(calibration[None]).tobytes())
        compiler.use_ptq(ptq)
        compiler.compile()
        compiler.gencode_tobytes()
    except Exception as exc:  # nncase raises RuntimeError/ValueError with its own message
        text = str(exc).strip()
        result = {"ok": False, "error": text.splitlines()[0][:300] if text else type(exc).__name__}
    else:
        result = {"ok": True, "error": None}
    (work / "result.json").write_text(json.dumps(result))
    return 0


def lint_result(model: bytes) -> dict:
    from k210.host.lint.onnx_lint import lint_onnx

    with tempfile.TemporaryDirectory(prefix="onnx_lint_") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model)
        report = lint_onnx(path, compiler="nncase1.9", quant="uint8")
    return {"ok": report.ok, "problems": list(report.problems)}


def compare(only: str | None, cache: Path) -> list[dict]:
    rows = []
    for name, model, calibration in graphs(only):
        import onnx

        op = onnx.load_from_string(model).graph.node[0].op_type
        real = nncase_result(model, calibration, cache)
        lint = lint_result(model)
        verdict = "agree"
        if real["ok"] and not lint["ok"]:
            verdict = "false alarm"
        elif not real["ok"] and lint["ok"]:
            verdict = "miss"
        rows.append({"name": name, "op": op, "nncase_ok": real["ok"], "nncase_error": real["error"],
                     "lint_ok": lint["ok"], "lint_problems": lint["problems"], "verdict": verdict})
    return rows


def summary(rows: list[dict]) -> dict:
    counts = Counter(r["verdict"] for r in rows)
    return {"graphs": len(rows), "nncase_fails": sum(not r["nncase_ok"] for r in rows),
            "lint_says_no": sum(not r["lint_ok"] for r in rows), "misses": counts["miss"],
            "false_alarms": counts["false alarm"],
            "missed": [f"{r['name']} ({r['nncase_error']})" for r in rows if r["verdict"] == "miss"],
            "false_alarm_graphs": [r["name"] for r in rows if r["verdict"] == "false alarm"]}


def table(rows: list[dict]) -> str:
    """Per op where nncase fails on any graph (the ReduceX ops as one row): the README's ONNX table."""
    counts: dict[str, list[int]] = {}
    for row in rows:
        op = "Reduce* (10 ops)" if row["op"].startswith("Reduce") else row["op"]
        c = counts.setdefault(op, [0, 0, 0, 0, 0])
        c[0] += 1
        c[1] += not row["nncase_ok"]
        c[2] += not row["lint_ok"]
        c[3] += row["verdict"] == "miss"
        c[4] += row["verdict"] == "false alarm"
    lines = ["| op | graphs | nncase fails | lint says no | misses | false alarms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    quiet = [op for op, c in counts.items() if not c[1]]
    for op, c in sorted(counts.items()):
        if c[1]:
            lines.append(f"| {op} | " + " | ".join(str(n) for n in c) + " |")
    rest = [sum(counts[op][i] for op in quiet) for i in range(5)]
    lines.append(f"| {len(quiet)} other ops | " + " | ".join(str(n) for n in rest) + " |")
    total = [sum(c[i] for c in counts.values()) for i in range(5)]
    lines.append("| **all** | " + " | ".join(f"**{n}**" for n in total) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_single_ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/bench/onnx_single_ops")
    parser.add_argument("--only", help="only the node tests whose name contains this")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(Path(args.worker))
    out = Path(args.out)
    started = time.perf_counter()
    rows = compare(args.only, out / "cache")
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    facts = summary(rows)
    (out / "summary.json").write_text(json.dumps(facts, indent=1))
    (out / "table.md").write_text(table(rows) + "\n")
    print(table(rows) + "\n\n" + json.dumps(facts, indent=1))
    print(f"{time.perf_counter() - started:.0f} s")
    return 1 if facts["false_alarms"] else 0


if __name__ == "__main__":
    sys.exit(main())
