"""Child process for `k210 explain`: one nncase 1.9 build of a TFLite graph, then its outputs.

Reads request.json from the current directory (see quant_explain.build); writes model.kmodel,
outputs_<i>.npy (the kmodel in nncase's simulator), import_<i>.npy (nncase's float evaluator at the
import stage) and result.json there. nncase prints its per-layer quant error on stdout, which the
parent reads. With a second argument (a pipe's file descriptor) and request["first"], it runs the
first inputs, says so on the pipe and reads on stdin whether to run the rest. Not a user entry point;
it runs in a child so that an nncase crash is an error line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .nncase_worker import compile_request


def explain_options(request: dict) -> Callable[[Any], None]:
    """The project's compile options (nncase_worker) plus what an explanation asks for."""

    def adjust(options) -> None:
        options.use_mse_quant_w = bool(request.get("use_mse_quant_w", False))
        if request.get("dump_quant_error") and request["quant"] == "uint8":
            options.dump_quant_error = True
            options.dump_dir = "dump"
            options.dump_ir = bool(request.get("dump_ir", False))  # module regions: which node runs on the KPU

    return adjust


def compile_kmodel(request: dict) -> bytes:
    return compile_request(request, explain_options(request))


def simulate(kmodel: bytes, inputs: np.ndarray, shape: list[int]) -> list[np.ndarray]:
    return [np.stack(o) for o in _simulated(kmodel, inputs, shape)]


def _simulated(kmodel: bytes, inputs: np.ndarray, shape: list[int]) -> list[list[np.ndarray]]:
    import nncase

    sim = nncase.Simulator()
    sim.load_model(kmodel)
    outputs: list[list[np.ndarray]] = [[] for _ in range(sim.outputs_size)]
    for x in inputs:
        sim.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(np.ascontiguousarray(x).reshape(shape)))
        sim.run()
        for i in range(sim.outputs_size):
            outputs[i].append(sim.get_output_tensor(i).to_numpy().copy())
    return outputs


def simulate_in_two(kmodel: bytes, inputs: np.ndarray, shape: list[int], first: int, ready_fd: int
                    ) -> tuple[list[np.ndarray], bool]:
    """The first `first` inputs, written as first_<i>.npy; a byte on ready_fd tells the parent, which
    answers on stdin whether to run the rest (a fix that can no longer win stops there)."""
    import os

    head = simulate(kmodel, inputs[:first], shape)
    for i, out in enumerate(head):
        np.save(f"first_{i}.npy", out)
    Path("first.json").write_text(json.dumps({"outputs": len(head)}))
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    if sys.stdin.readline().strip() != "go" or len(inputs) <= first:
        return head, len(inputs) > first
    tail = simulate(kmodel, inputs[first:], shape)
    return [np.concatenate([h, t]) for h, t in zip(head, tail)], False


def evaluate_import(request: dict, inputs: np.ndarray) -> list[np.ndarray]:
    """nncase's own float graph right after import (create_evaluator(1)): does the import hold?"""
    import nncase

    options = nncase.CompileOptions()
    options.target = "k210"
    options.input_layout = "NHWC"
    options.output_layout = "NHWC"
    options.input_shape = request["input_shape"]
    compiler = nncase.Compiler(options)
    compiler.import_tflite(Path(request["tflite"]).read_bytes(), nncase.ImportOptions())
    evaluator = compiler.create_evaluator(1)
    outputs: list[list[np.ndarray]] = [[] for _ in range(evaluator.outputs_size)]
    for x in inputs:
        tensor = nncase.RuntimeTensor.from_numpy(np.ascontiguousarray(x, np.float32).reshape(request["input_shape"]))
        tensor.copy_to(evaluator.get_input_tensor(0))
        evaluator.run()
        for i in range(evaluator.outputs_size):
            outputs[i].append(evaluator.get_output_tensor(i).to_numpy().copy())
    return [np.stack(o) for o in outputs]


def main() -> int:
    request = json.loads(Path(sys.argv[1]).read_text())
    try:
        kmodel = compile_kmodel(request)
        Path("model.kmodel").write_bytes(kmodel)
        result: dict = {"ok": True, "outputs": 0, "import_outputs": 0}
        if request.get("eval"):
            inputs = np.load(request["eval"])
            if request.get("first") and len(sys.argv) > 2:
                outputs, result["cut"] = simulate_in_two(kmodel, inputs, request["input_shape"],
                                                         int(request["first"]), int(sys.argv[2]))
            else:
                outputs = simulate(kmodel, inputs, request["input_shape"])
            for i, out in enumerate(outputs):
                np.save(f"outputs_{i}.npy", out)
            result["outputs"] = len(outputs)
        if request.get("import_eval"):
            outputs = evaluate_import(request, np.load(request["import_eval"]))
            for i, out in enumerate(outputs):
                np.save(f"import_{i}.npy", out)
            result["import_outputs"] = len(outputs)
    except Exception as exc:  # nncase raises RuntimeError/ValueError with its own message
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        Path("result.json").write_text(json.dumps({"ok": False, "error": message}))
        return 1
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)  # nncase's threads included: the build's CPU, whatever the load
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    Path("result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
