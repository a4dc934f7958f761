"""TFLite -> kmodel with nncase 1.9, in a child process.

nncase can kill the whole Python process (a SIGSEGV in pre-processing with some option mixes),
so it never runs in the CLI's own process: a crash becomes a one-line ToolFailure.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError, CheckFailed, ToolFailure

QUANT_MODES = ("float", "uint8")
INPUT_TYPES = ("float32", "uint8")
CALIBRATE_METHODS = ("no_clip", "l2", "kld_m0", "kld_m1", "kld_m2", "cdf")  # nncase 1.9's PTQ choices

_MEMORY_LINE = re.compile(r"^\s*(\.?[A-Za-z_]+)\s+[\d.]+\s*[KMG]?B\s+\((\d+) B\)\s*$")
_STAGE_LINE = re.compile(r"^\s*\d+(\.\d+)*\.?\s+[A-Z].*\.\.\.\s*$")


@dataclass
class CompileSpec:
    """How to compile: quantisation and the input the board will feed."""

    quant: str = "float"  # "float": CPU-only kmodel; "uint8": PTQ, KPU code generated
    calibration: np.ndarray | None = None  # PTQ samples, in the compiled input's dtype, NHWC
    input_type: str = "float32"  # "uint8": the board sends raw pixels, nncase maps them to input_range
    input_range: tuple[float, float] = (0.0, 1.0)
    calibrate_method: str = "no_clip"
    use_mse_quant_w: bool = False  # KPU weights quantised by least squares instead of min/max
    input_shape: list[int] = field(default_factory=list)  # NHWC, batch 1
    mean: list[float] | None = None  # per channel, applied by nncase after input_range (uint8 input only)
    std: list[float] | None = None

    def validate(self) -> None:
        if self.quant not in QUANT_MODES:
            raise BadInputError(f"unknown quantisation '{self.quant}' (choose from {', '.join(QUANT_MODES)})")
        if self.calibrate_method not in CALIBRATE_METHODS:
            raise BadInputError(f"unknown calibration method '{self.calibrate_method}' "
                                f"(choose from {', '.join(CALIBRATE_METHODS)})")
        if self.input_type not in INPUT_TYPES:
            raise BadInputError(f"unknown input type '{self.input_type}' (choose from {', '.join(INPUT_TYPES)})")
        if self.quant == "uint8" and (self.calibration is None or len(self.calibration) == 0):
            raise BadInputError("uint8 quantisation needs calibration samples (--calib N with --dataset)")
        lo, hi = self.input_range
        if not lo < hi:
            raise BadInputError(f"input range {lo},{hi} is empty")

    def describe(self) -> dict:
        return {
            "quant": self.quant,
            "input_type": self.input_type,
            "input_range": list(self.input_range),
            "calibrate_method": self.calibrate_method if self.quant == "uint8" else None,
            "calibration_samples": 0 if self.calibration is None else int(len(self.calibration)),
            "use_mse_quant_w": self.use_mse_quant_w,
        }


@dataclass
class CompiledKModel:
    kmodel: bytes
    memory: dict[str, int]  # nncase's summary: .input .output .data MODEL TOTAL, in bytes
    log: str


def compile_tflite(tflite: bytes, spec: CompileSpec, *, timeout: float = 900) -> CompiledKModel:
    spec.validate()
    with tempfile.TemporaryDirectory(prefix="k210-nncase-") as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(tflite)
        request = {
            "tflite": "model.tflite",
            "kmodel": "model.kmodel",
            "quant": spec.quant,
            "input_type": spec.input_type,
            "input_range": list(spec.input_range),
            "input_shape": list(spec.input_shape),
            "calibrate_method": spec.calibrate_method,
            "use_mse_quant_w": spec.use_mse_quant_w,
            "calibration": None,
            "mean": spec.mean,
            "std": spec.std,
        }
        if spec.quant == "uint8":
            np.save(work / "calibration.npy", spec.calibration)
            request["calibration"] = "calibration.npy"
        (work / "request.json").write_text(json.dumps(request))
        # cwd=work: nncase writes kmodel_info.txt into the current directory.
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "k210.converters.nncase_worker", "request.json"],
                cwd=work, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ToolFailure(f"nncase did not finish within {timeout:.0f} s") from None
        log = proc.stdout + proc.stderr
        result_file = work / "result.json"
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise ToolFailure(f"nncase crashed ({name}) during '{_last_stage(log)}'")
        if not result_file.exists():
            raise ToolFailure(f"nncase failed (exit {proc.returncode}): {_tail(log)}")
        result = json.loads(result_file.read_text())
        if not result["ok"]:
            if kpu_memory_error(result["error"]):  # does not fit: exit 1, as when lint finds it (README's table)
                raise CheckFailed(f"the model does not fit: nncase refused it ('{result['error']}'): a layer's "
                                  "feature maps do not fit the K210's 2 MiB KPU RAM; lower the input resolution or "
                                  "the channels of the largest layer (k210 lint shows it)")
            raise BadInputError(f"nncase refused the model: {result['error']}")  # the model, not a crash: 2
        return CompiledKModel((work / "model.kmodel").read_bytes(), parse_memory_summary(log), log)


# What nncase 1.9 says when feature maps do not fit the 2 MiB KPU RAM (the second measured here on a
# 3x3x32 conv over 240x320x3).
KPU_MEMORY_MESSAGES = ("KPU allocator cannot allocate more memory", "Allocator has ran out of memory")


def kpu_memory_error(error: str | None) -> bool:
    return any(message in (error or "") for message in KPU_MEMORY_MESSAGES)


def parse_memory_summary(log: str) -> dict[str, int]:
    """nncase's `MEMORY USAGES` block: `.input 784.00 B (784 B)` -> {"input": 784, ...}."""
    memory: dict[str, int] = {}
    in_block = False
    for line in log.splitlines():
        if line.strip() == "MEMORY USAGES":
            in_block = True
            continue
        if in_block:
            match = _MEMORY_LINE.match(line)
            if not match:
                break
            memory[match.group(1).lstrip(".").lower()] = int(match.group(2))
    return memory


def _last_stage(log: str) -> str:
    stages = [line.strip() for line in log.splitlines() if _STAGE_LINE.match(line)]
    return stages[-1].rstrip(".") if stages else "start-up"


def _tail(log: str) -> str:
    lines = [line for line in log.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"

