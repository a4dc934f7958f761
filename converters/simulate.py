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

from k210.host.errors import BadInputError, ToolFailure

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


def _init_worker(kmodel: bytes) -> None:
    global _simulator
    _simulator = KModelSimulator(kmodel)


def _run_chunk(chunk: np.ndarray) -> np.ndarray:
    assert _simulator is not None
    return np.stack([_simulator.run(x[None])[0] for x in chunk])


def simulate(
    kmodel: bytes,
    inputs: np.ndarray,
    *,
    workers: int | None = None,
    chunk: int = 32,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Outputs of the kmodel's first output for each of `inputs` ([N, ...] per-image tensors)."""
    info = parse_kmodel(kmodel)
    if info.version != 5:
        raise BadInputError(f"nncase 1.9's simulator runs kmodel v5 only (this is v{info.version})")
    n = len(inputs)
    if n == 0:
        out_shape = info.outputs[0].shape[1:] if info.outputs else []
        return np.zeros((0, *out_shape), np.float32)
    workers = max(1, min(workers or os.cpu_count() or 1, (n + chunk - 1) // chunk))
    pieces = [inputs[i : i + chunk] for i in range(0, n, chunk)]
    context = multiprocessing.get_context("spawn")
    results: list[np.ndarray] = []
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(kmodel,)) as pool:
            for piece, out in zip(pieces, pool.map(_run_chunk, pieces)):
                results.append(out)
                if progress:
                    progress(len(piece))
    except BrokenProcessPool:
        raise ToolFailure("nncase's simulator crashed while running the kmodel") from None
    outputs = np.concatenate(results)
    # The simulator keeps the batch dim of 1 per image: drop it.
    return outputs.reshape(n, *outputs.shape[2:]) if outputs.ndim > 1 and outputs.shape[1] == 1 else outputs
