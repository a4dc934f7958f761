"""Child process that runs nncase 1.9 on one request (see compile.py). Not a user entry point.

Reads request.json from the current directory, writes the kmodel and result.json there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def build_options(request: dict):
    import nncase

    options = nncase.CompileOptions()
    options.target = "k210"
    # TFLite models are NHWC; nncase's default NCHW adds transposes and, with preprocessing,
    # can SIGSEGV (facts file). Keep the model's own layout at both ends.
    options.input_layout = "NHWC"
    options.output_layout = "NHWC"
    options.input_shape = request["input_shape"]
    if request["input_type"] == "uint8":
        options.preprocess = True
        options.input_type = "uint8"
        options.input_range = request["input_range"]
        if request.get("mean") is not None:  # nncase normalises after input_range: (x - mean) / std
            options.mean = request["mean"]
            options.std = request["std"]
    elif request["quant"] == "uint8":
        options.input_type = "float32"
    options.quant_type = "uint8"
    options.w_quant_type = "uint8"
    options.use_mse_quant_w = bool(request.get("use_mse_quant_w", False))
    return options


def compile_request(request: dict, adjust: Callable[[Any], None] | None = None) -> bytes:
    """The kmodel for `request`; `adjust` may add to the options (a dump directory, say) before compiling."""
    import nncase

    options = build_options(request)
    if adjust is not None:
        adjust(options)
    compiler = nncase.Compiler(options)
    compiler.import_tflite(Path(request["tflite"]).read_bytes(), nncase.ImportOptions())
    if request["quant"] == "uint8":
        samples = np.load(request["calibration"])
        ptq = nncase.PTQTensorOptions()
        ptq.calibrate_method = request["calibrate_method"]
        ptq.samples_count = int(samples.shape[0])
        ptq.set_tensor_data(np.ascontiguousarray(samples).tobytes())
        compiler.use_ptq(ptq)
    compiler.compile()
    return bytes(compiler.gencode_tobytes())


def run(request: dict, adjust: Callable[[Any], None] | None = None) -> int:
    """Compile, then leave the kmodel and result.json (ok, or nncase's first error line) for the parent."""
    try:
        kmodel = compile_request(request, adjust)
    except Exception as exc:  # nncase raises RuntimeError/ValueError with its own message
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        Path("result.json").write_text(json.dumps({"ok": False, "error": message}))
        return 1
    Path(request["kmodel"]).write_bytes(kmodel)
    Path("result.json").write_text(json.dumps({"ok": True}))
    return 0


def main() -> int:
    return run(json.loads(Path(sys.argv[1]).read_text()))

if __name__ == "__main__":
    sys.exit(main())
