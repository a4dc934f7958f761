"""Minimal stand-ins for the MicroPython modules firmware/maixpy/main.py imports.

`install(profile, uart_fd)` puts them into sys.modules: `machine` (UART over a file descriptor,
reset), `fpioa_manager`, `utime`, `urandom`, and either `KPU` (Sipeed MaixPy-v1: kmodel v3/v4) or
`maix` (CanMV: `maix.KPU`, v3/v4/v5). The KPU stand-ins run the arithmetic fake kmodel
(arith_model.py) and reject what the real modules reject (a v5 file on MaixPy-v1, a name without
.kmodel, a v4 model whose outputs were not set). Issue 5's virtual board replaces these with
nncase's simulator; these only have to be honest about the API.
"""

from __future__ import annotations

import os
import random
import select
import struct
import sys
import time
import types
from typing import Any

from .arith_model import arith_outputs, parse_arith_kmodel


class FakeReboot(BaseException):  # noqa: N818 - mirrors machine.reset(), which never returns
    """machine.reset(): the launcher restarts main.py, as a real board reboots into it."""


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def _machine(uart_fd: int) -> types.ModuleType:
    class UART:
        UART1 = 1
        UART2 = 2
        UART3 = 3

        def __init__(self, uart_id: int, baud: int, bits: int = 8, parity: Any = None, stop: int = 1,
                     timeout: int = 0, read_buf_len: int = 256, **_: Any):
            assert uart_id == UART.UART1 and bits == 8 and parity is None and stop == 1
            self.timeout_s = timeout / 1000.0
            self.read_buf_len = read_buf_len

        def readinto(self, buf: bytearray) -> int | None:
            ready, _, _ = select.select([uart_fd], [], [], self.timeout_s)
            if not ready:
                return None
            data = os.read(uart_fd, len(buf))
            if not data:
                raise FakeReboot()  # the host side went away: treat like a power cycle
            buf[: len(data)] = data
            return len(data)

        def write(self, buf: Any) -> int:
            view = memoryview(buf)
            while view:
                view = view[os.write(uart_fd, view):]
            return len(buf)

    def reset() -> None:
        raise FakeReboot()

    return _module("machine", UART=UART, reset=reset)


def _fpioa_manager() -> types.ModuleType:
    class _Fpioa:
        UART1_TX = 64 + 1  # values only have to differ; the real ones are FPIOA function numbers
        UART1_RX = 64

    class _FM:
        fpioa = _Fpioa
        registered: dict[int, int] = {}

        def register(self, pin: int, function: int) -> None:
            self.registered[pin] = function

    return _module("fpioa_manager", fm=_FM())


def _utime() -> types.ModuleType:
    def ticks_us() -> int:
        return (time.perf_counter_ns() // 1000) & 0x3FFFFFFF

    def ticks_diff(a: int, b: int) -> int:
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    return _module("utime", ticks_us=ticks_us, ticks_diff=ticks_diff, sleep_ms=lambda ms: time.sleep(ms / 1000))


def _read_model(source: Any, flash: dict[int, bytes], size: int = 0) -> bytes:
    if isinstance(source, int):
        return flash[source][: size or None]
    with open(source, "rb") as f:
        return f.read()


class _Fmap:
    def __init__(self, raw: bytes, typecode: str):
        self.raw, self._typecode = raw, typecode

    def __bytes__(self) -> bytes:
        return self.raw

    def typecode(self) -> str:
        return self._typecode

    def __getitem__(self, index: slice) -> tuple[float, ...]:
        return struct.unpack(f"<{len(self.raw) // 4}f", self.raw)[index]


def _maixpy_v1_kpu(flash: dict[int, bytes]) -> types.ModuleType:
    class Task:
        def __init__(self, model: bytes):
            self.version, self.mul, self.add, self.input_len = parse_arith_kmodel(model)
            self.outputs_set: set[int] = set()
            self.results: list[bytes] = []

    def load(source: Any) -> Task:
        if isinstance(source, str) and ".kmodel" not in source:
            raise ValueError("[MAIXPY]kpu: model format don't match, only supply .kmodel ")
        model = _read_model(source, flash)
        version = 3 if model[:4] == struct.pack("<I", 3) else struct.unpack_from("<I", model, 4)[0]
        if version not in (3, 4):
            raise ValueError("[MAIXPY]kpu: load error:2002, ERR_KMODEL_VERSION: only support kmodel V3/V4 now")
        return Task(model)

    def set_outputs(task: Task, index: int, w: int, h: int, ch: int) -> bool:
        task.outputs_set.add(index)
        return True

    def forward(task: Task, data: Any) -> _Fmap:
        if not isinstance(data, list) or not data:
            raise ValueError("input not support")
        if task.version == 4 and 0 not in task.outputs_set:
            raise OSError("ERR_OUTPUTS_SET: need kpu.set_outputs() to set shape")
        x = bytes(int(v) & 0xFF for v in data[: task.input_len])
        out0, total = arith_outputs(x, task.mul, task.add)
        task.results = [struct.pack(f"<{len(out0)}f", *out0), struct.pack("<f", total)]
        return _Fmap(task.results[0], "f")

    def get_output(task: Task, index: int) -> _Fmap:
        if task.version == 4 and index not in task.outputs_set:
            raise OSError("get_outputs_shape err")
        return _Fmap(task.results[index], "f")

    def deinit(task: Task) -> bool:
        return True

    return _module("KPU", load=load, set_outputs=set_outputs, forward=forward, get_output=get_output,
                   deinit=deinit)


def _canmv_maix(flash: dict[int, bytes], versions: tuple[int, ...]) -> types.ModuleType:
    class KPU:
        def __init__(self) -> None:
            self.model: tuple[int, int, int, int] | None = None

        def load_kmodel(self, source: Any, size: int = 0) -> None:
            if isinstance(source, int) and size <= 0:
                raise ValueError("size error!")
            model = _read_model(source, flash, size)
            version = parse_arith_kmodel(model)[0]
            if version not in versions:
                raise OSError("Failed to init model")
            self.model = parse_arith_kmodel(model)

        def run_with_output(self, input: Any, getlist: bool = False, get_feature: bool = False) -> Any:
            if self.model is None:
                raise OSError("Please load kmodel before")
            with open(input, "rb") as f:
                x = f.read()
            _, mul, add, input_len = self.model
            out0, _ = arith_outputs(x[:input_len], mul, add)
            return [float(v) for v in out0] if getlist else None

        def deinit(self) -> None:
            self.model = None

    return _module("maix", KPU=KPU)


def install(profile: str, uart_fd: int, flash: dict[int, bytes] | None = None,
            canmv_versions: tuple[int, ...] = (3, 4, 5)) -> None:
    """Put the stand-ins for `profile` ('maixpy-v1', 'canmv' (v1.0.x API) or 'canmv-kpu') into sys.modules."""
    flash = flash if flash is not None else {}
    for name in ("KPU", "maix"):
        sys.modules.pop(name, None)
    sys.modules["machine"] = _machine(uart_fd)
    sys.modules["fpioa_manager"] = _fpioa_manager()
    sys.modules["utime"] = _utime()
    sys.modules["urandom"] = _module("urandom", getrandbits=random.getrandbits)
    for name in ("image",):
        sys.modules.pop(name, None)
    if profile == "maixpy-v1":
        sys.modules["KPU"] = _maixpy_v1_kpu(flash)
    elif profile == "canmv":
        sys.modules["maix"] = _canmv_maix(flash, canmv_versions)
    elif profile == "canmv-kpu":  # CanMV feat/kpu: load/run(image)/get_outputs, as mp_stubs emulates it
        from . import mp_stubs

        sys.modules["maix"] = mp_stubs.make_canmv_feat_kpu(open, flash)
        sys.modules["image"] = mp_stubs.make_image(open)
    else:
        raise ValueError(f"unknown profile {profile!r}")
