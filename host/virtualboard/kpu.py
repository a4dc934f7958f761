"""Stand-ins for the KPU modules: MaixPy-v1's `KPU` and CanMV's `maix.KPU`, over nncase's simulator.

They load what the real firmware loads and refuse what it refuses:
- MaixPy-v1 (`import KPU as kpu`) loads kmodel v3/v4 only; a v5 file fails with its error 2002.
  nncase 0.x, which runs v3/v4, has no host build here, so the virtual board cannot run them either
  and says so at load time.
- CanMV (`from maix import KPU`) loads v5 and runs it in nncase 1.9's simulator: the same runtime
  `k210 verify` uses, so board and simulator outputs are bit-identical unless the transport damages
  them.

Sources they follow, and where they part from them:
- MaixPy-v1: sipeed/MaixPy-v1 components/micropython/port/src/Maix/Maix_kpu.c (load's error 2002).
- CanMV: kendryte/canmv branch main, port/src/Maix/maix_kpu/Maix_kpu.c: a class with load_kmodel(path |
  offset, size) and run_with_output(path, getlist=True). That firmware's runtime is nncase 0.x's
  (MODEL_VERSION 4: v3/v4 only), and it returns output 0's buffer as byte count // 4 float32 values.
  The virtual board keeps that file API but runs kmodel v5 (only CanMV feat/kpu loads v5 under
  MicroPython, and its KPU.run takes images, one 8-bit channel exactly) and returns output 0 element by
  element as floats, so that every input shape runs and outputs stay exact. It is a test bench, not
  one released firmware: tests/boardfakes/mp_stubs.py holds the stand-ins faithful to each firmware.
"""

from __future__ import annotations

import types
from typing import Any, Protocol

import numpy as np

from k210.core import firmwares

from .flash import Flash

_NUMPY = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32, "int32": np.int32}


def kmodel_version(head: bytes) -> int:
    from k210.firmware import k210wire

    return k210wire.kmodel_version(head[:8])


class KpuBoard(Protocol):
    """What the KPU modules use of the virtual board (VirtualBoard is one)."""

    flash: Flash
    models: ModelCache


def read_model(board: KpuBoard, source: Any, size: int = 0) -> bytes:
    """A kmodel from a file path or a flash offset, as the firmware's loaders take it."""
    if isinstance(source, int):
        return board.flash.read(source, size)
    with open(source, "rb") as f:
        return f.read()


class SimulatedModel:
    """One kmodel loaded into nncase's simulator, fed raw input bytes as the KPU gets them."""

    def __init__(self, kmodel: bytes) -> None:
        from k210.converters.simulate import KModelSimulator

        self._sim = KModelSimulator(kmodel)
        desc = self._sim.info.inputs[0]
        self.input_dtype = np.dtype(_NUMPY[desc.dtype])
        self.input_shape = tuple(desc.shape)
        self.input_bytes = desc.size

    def run(self, raw: bytes) -> list[np.ndarray]:
        if len(raw) != self.input_bytes:
            raise ValueError(f"input of {len(raw)} bytes, the model takes {self.input_bytes}")
        x = np.frombuffer(raw, self.input_dtype).reshape(self.input_shape)
        return self._sim.run(x)


def make_maixpy_kpu(board: KpuBoard) -> types.ModuleType:
    """Sipeed MaixPy-v1's `KPU` module."""

    def load(source: Any) -> Any:
        if isinstance(source, str) and ".kmodel" not in source:
            raise ValueError("[MAIXPY]kpu: model format don't match, only supply .kmodel ")
        data = read_model(board, source)
        version = kmodel_version(data)
        if not firmwares.MAIXPY.loads(version):  # k210.core.firmwares: v3/v4
            raise ValueError("[MAIXPY]kpu: load error:2002, ERR_KMODEL_VERSION: only support kmodel V3/V4 now")
        raise OSError(f"virtual board: no host runtime for kmodel v{version} (nncase 0.x, which runs it, "
                      "has no build for this machine)")

    def _no_task(*_: Any, **__: Any) -> Any:
        raise ValueError("[MAIXPY]kpu: invalid task")

    module = types.ModuleType("KPU")
    module.__dict__.update(load=load, set_outputs=_no_task, forward=_no_task, get_output=_no_task,
                           deinit=lambda task: True)
    return module


def make_canmv_maix(board: KpuBoard, versions: tuple[int, ...] = (5,)) -> types.ModuleType:
    """CanMV's `maix` module with its nncase-1.x `KPU` class."""

    class KPU:
        def __init__(self) -> None:
            self._model: SimulatedModel | None = None

        def load_kmodel(self, source: Any, size: int = 0) -> None:
            if isinstance(source, int) and size <= 0:
                raise ValueError("size error!")
            data = read_model(board, source, size)
            version = kmodel_version(data)
            if version not in versions:
                raise OSError(f"Failed to init model: kmodel v{version}, this build loads "
                              + "/".join(f"v{v}" for v in versions))
            try:
                self._model = board.models.load(data)
            except Exception as exc:
                raise OSError(f"Failed to init model: {exc}") from None

        def run_with_output(self, input: Any, getlist: bool = False, get_feature: bool = False) -> Any:
            if self._model is None:
                raise OSError("Please load kmodel before")
            if isinstance(input, str):
                with open(input, "rb") as f:
                    raw = f.read()
            else:
                raw = bytes(input)
            out = self._model.run(raw)[0]
            # CanMV hands back output 0 as float32 values.
            values = out.astype(np.float32).ravel().tolist()
            return values if getlist else None

        def deinit(self) -> None:
            self._model = None

    module = types.ModuleType("maix")
    module.__dict__.update(KPU=KPU)
    return module


class ModelCache:
    """Loaded simulators by kmodel content: a reboot that reloads the same model reuses it."""

    def __init__(self) -> None:
        self._models: dict[bytes, SimulatedModel] = {}

    def load(self, kmodel: bytes) -> SimulatedModel:
        import hashlib

        key = hashlib.sha256(kmodel).digest()
        if key not in self._models:
            self._models.clear()  # the board holds one model at a time
            self._models[key] = SimulatedModel(kmodel)
        return self._models[key]
