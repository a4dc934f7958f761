"""Run a kmodel in nncase's own simulator, in worker processes.

Worker processes keep an nncase crash away from the CLI and use both cores (the float simulator
needs ~50 ms per image). Workers import only numpy and nncase, never TensorFlow.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from k210.core.errors import BadInputError, ToolFailure

from .kmodel import parse_kmodel

_NUMPY_DTYPES = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32, "int32": np.int32}
_simulator = None  # one per worker process


class KModelSimulator:
    """In-process nncase.Simulator for one kmodel (used by workers and the virtual board)."""

    def __init__(self, kmodel: bytes) -> None:
        import nncase

        self._nncase = nncase
        self._kmodel = kmodel  # the simulator reads from this buffer: keep it alive
        self.sim = nncase.Simulator()
        self.sim.load_model(kmodel)
        self.info = parse_kmodel(kmodel)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        desc = self.info.inputs[0]
        x = np.ascontiguousarray(x, dtype=_NUMPY_DTYPES[desc.dtype]).reshape(desc.shape)
        self.sim.set_input_tensor(0, self._nncase.RuntimeTensor.from_numpy(x))
        self.sim.run()
        return [self.sim.get_output_tensor(i).to_numpy().copy() for i in range(self.sim.outputs_size)]


def _init_worker(kmodel: bytes, parent: int) -> None:
    global _simulator
    from k210.core.lifeline import die_with_parent

    die_with_parent(parent)  # a kill -9 of the CLI leaves no worker (nor the resource tracker) behind
    _simulator = KModelSimulator(kmodel)


def _run_chunk(chunk: np.ndarray) -> list[np.ndarray]:
    assert _simulator is not None
    per_image = [_simulator.run(x[None]) for x in chunk]
    return [np.stack([outs[k] for outs in per_image]) for k in range(len(per_image[0]))]


def check_runnable(kmodel: bytes):
    """The kmodel's header, or a one-line BadInputError if nncase 1.9's simulator cannot take it."""
    try:
        info = parse_kmodel(kmodel)
    except BadInputError:
        raise
    except Exception as exc:  # a truncated or foreign file
        raise BadInputError(f"not a kmodel nncase can read: {exc}") from None
    if info.version != 5:
        made_by = {3: " (nncase 0.1's format)", 4: " (nncase 0.2's format)"}.get(info.version, "")
        raise BadInputError(f"kmodel v{info.version}{made_by} cannot run in nncase 1.9's simulator, "
                            "which runs kmodel v5 only")
    if len(info.inputs) != 1 or not info.inputs[0].shape or info.inputs[0].dtype not in _NUMPY_DTYPES:
        raise BadInputError("the simulator feeds models with one uint8/float32 input; this kmodel's inputs are "
                            + ", ".join(f"{d.dtype}{d.shape}" for d in info.inputs))
    return info


def simulate(
    kmodel: bytes,
    inputs: np.ndarray,
    *,
    workers: int | None = None,
    chunk: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Every output of the kmodel for each of `inputs` ([N, ...] per-image tensors): a list of [N, ...]."""
    info = check_runnable(kmodel)
    n = len(inputs)
    if n == 0:
        return [np.zeros((0, *(d.shape or [1])[1:]), np.float32) for d in info.outputs]
    workers = max(1, min(workers or os.cpu_count() or 1, (n + chunk - 1) // chunk))
    pieces = [inputs[i : i + chunk] for i in range(0, n, chunk)]
    context = multiprocessing.get_context("spawn")
    results: list[list[np.ndarray]] = []
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(kmodel, os.getpid())) as pool:
            for piece, out in zip(pieces, pool.map(_run_chunk, pieces)):
                results.append(out)
                if progress:
                    progress(len(piece))
    except BrokenProcessPool:
        raise ToolFailure("nncase's simulator crashed while running the kmodel") from None
    except (RuntimeError, ValueError, TypeError) as exc:  # nncase's own error, raised in a worker
        text = str(exc).strip().splitlines()
        raise ToolFailure(f"nncase's simulator cannot run this kmodel: {text[0][:240] if text else type(exc).__name__}"
                          ) from None
    outputs = [np.concatenate([r[k] for r in results]) for k in range(len(results[0]))]
    # The simulator keeps the batch dim of 1 per image: drop it.
    return [o.reshape(n, *o.shape[2:]) if o.ndim > 1 and o.shape[1] == 1 else o for o in outputs]
