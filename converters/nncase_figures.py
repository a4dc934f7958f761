"""What nncase 1.9 really does with a TFLite model: its memory summary and its op schedule.

Compiles in a child process (nncase can crash the interpreter), like converters/compile.py, with
`dump_asm` on: nncase then writes one `runtime_ops.txt` per module function (stackvm/main,
k210/k210_N), the ops it really emitted. From those this counts the convs on the KPU (`KPUConv2D`)
and on the CPU (`Conv2D` in the stackvm module). Used by `k210 lint --confirm`, `k210 compile`'s
gate and benchmarks/lint_vs_nncase.py. Run as `python -m k210.converters.nncase_figures request.json`
only by this module.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .compile import KPU_MEMORY_MESSAGES, kpu_memory_error, parse_memory_summary  # noqa: F401 - re-exported

_OP_LINE = re.compile(r"^\[(\w+)\]")


@dataclass
class NncaseFigures:
    """nncase's own result for one model: compiled or not, and if so its figures."""

    compiled: bool
    error: str | None = None
    memory: dict[str, int] = field(default_factory=dict)  # input, output, data, model, total (bytes)
    modules: list[str] = field(default_factory=list)  # module types in the kmodel
    kpu_convs: int = 0  # KPUConv2D ops in the k210 functions
    cpu_convs: int = 0  # Conv2D ops in the stackvm function
    kpu_functions: int = 0
    ops: dict[str, int] = field(default_factory=dict)  # every emitted op kind, all modules
    kmodel_bytes: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int | None:
        return self.memory.get("total")

    def to_dict(self) -> dict:
        return asdict(self) | {"total": self.total}


def random_calibration(input_shape: list[int], count: int = 4, seed: int = 0,
                       input_type: str = "uint8") -> np.ndarray:
    """Seeded random samples: enough for nncase to place ops and size its pools (not for accuracy)."""
    rng = np.random.default_rng(seed)
    shape = (count, *[max(int(d), 1) for d in input_shape[1:]])
    if input_type == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.random(shape, dtype=np.float32)


def nncase_figures(tflite: bytes, input_shape: list[int], *, quant: str = "uint8", input_type: str | None = None,
                   samples: int = 4, seed: int = 0, timeout: float = 900) -> NncaseFigures:
    """Compile `tflite` for the k210 target in a child process; never raises for nncase's own failures."""
    import time

    input_type = input_type or ("uint8" if quant == "uint8" else "float32")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="k210-figures-") as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(tflite)
        request = {
            "tflite": "model.tflite", "kmodel": "model.kmodel", "quant": quant, "input_type": input_type,
            "input_range": [0.0, 1.0], "input_shape": list(input_shape), "calibrate_method": "no_clip",
            "calibration": None, "dump_dir": "dump",
        }
        if quant == "uint8":
            np.save(work / "calibration.npy", random_calibration(input_shape, samples, seed, input_type))
            request["calibration"] = "calibration.npy"
        (work / "request.json").write_text(json.dumps(request))
        try:
            proc = subprocess.run([sys.executable, "-m", "k210.converters.nncase_figures", "request.json"],
                                  cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return NncaseFigures(False, f"nncase did not finish within {timeout:.0f} s")
        figures = _read_result(work, proc)
    figures.seconds = round(time.perf_counter() - started, 1)
    return figures


def _read_result(work: Path, proc: subprocess.CompletedProcess) -> NncaseFigures:
    from .compile import _last_stage, _tail

    log = proc.stdout + proc.stderr
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return NncaseFigures(False, f"nncase crashed ({name}) during '{_last_stage(log)}'")
    result_file = work / "result.json"
    if not result_file.exists():
        return NncaseFigures(False, f"nncase failed (exit {proc.returncode}): {_tail(log)}")
    result = json.loads(result_file.read_text())
    if not result["ok"]:
        return NncaseFigures(False, result["error"])
    kmodel = (work / "model.kmodel").read_bytes()
    figures = schedule_figures(work / "dump")
    figures.memory = parse_memory_summary(log)
    figures.kmodel_bytes = len(kmodel)
    from .kmodel import parse_kmodel

    figures.modules = [m.type for m in parse_kmodel(kmodel).modules]
    return figures


def schedule_figures(dump_dir: Path) -> NncaseFigures:
    """Count the ops nncase emitted, from its dump_asm runtime_ops.txt files."""
    ops: Counter[str] = Counter()
    kpu_convs = cpu_convs = kpu_functions = 0
    for path in sorted(dump_dir.glob("*/*/runtime_ops.txt")):
        module = path.parent.parent.name
        names = [m.group(1) for line in path.read_text().splitlines() if (m := _OP_LINE.match(line))]
        ops.update(names)
        if module == "k210":
            kpu_functions += 1
            kpu_convs += names.count("KPUConv2D")
        elif module == "stackvm":
            cpu_convs += names.count("Conv2D")
    return NncaseFigures(True, kpu_convs=kpu_convs, cpu_convs=cpu_convs, kpu_functions=kpu_functions,
                         ops=dict(sorted(ops.items())))


def main() -> int:
    from .nncase_worker import run

    request = json.loads(Path(sys.argv[1]).read_text())

    def with_dump(options) -> None:  # the project's options, plus the schedule dump
        options.dump_asm = True
        options.dump_dir = str(Path(request["dump_dir"]).resolve())

    return run(request, with_dump)

if __name__ == "__main__":
    sys.exit(main())
