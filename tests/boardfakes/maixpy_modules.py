"""Minimal stand-ins for the MicroPython modules firmware/maixpy/main.py imports.

`install(profile, uart_fd)` puts them into sys.modules: `machine` (UART over a file descriptor,
reset), `fpioa_manager`, `utime`, `urandom`, and either `KPU` (Sipeed MaixPy-v1: kmodel v3/v4) or
`maix` (CanMV main: v3/v4; CanMV feat/kpu: v3/v4/v5), from mp_stubs.py, which cites the firmware
source each follows. They run the arithmetic fake kmodel (arith_model.py) and reject what the real
modules reject (a v5 file on MaixPy-v1, a name without .kmodel, a v4 model whose outputs were not set).
"""

from __future__ import annotations

import os
import random
import select
import sys
import time
import types
from typing import Any


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


def install(profile: str, uart_fd: int, flash: dict[int, bytes] | None = None) -> None:
    """Put the stand-ins for `profile` ('maixpy-v1', 'canmv' (CanMV main) or 'canmv-kpu' (CanMV feat/kpu))
    into sys.modules. The KPU and image modules are mp_stubs' (each cites the firmware source it follows):
    one stand-in per firmware for CPython and real MicroPython alike."""
    from . import mp_stubs

    flash = flash if flash is not None else {}
    for name in ("KPU", "maix", "image"):
        sys.modules.pop(name, None)
    sys.modules["machine"] = _machine(uart_fd)
    sys.modules["fpioa_manager"] = _fpioa_manager()
    sys.modules["utime"] = _utime()
    sys.modules["urandom"] = _module("urandom", getrandbits=random.getrandbits)
    if profile == "maixpy-v1":
        sys.modules["KPU"] = mp_stubs.make_maixpy_kpu(open, flash)
    elif profile == "canmv":
        sys.modules["maix"] = mp_stubs.make_canmv_v1(open, flash)
    elif profile == "canmv-kpu":
        sys.modules["maix"] = mp_stubs.make_canmv_feat_kpu(open, flash)
        sys.modules["image"] = mp_stubs.make_image(open)
    else:
        raise ValueError(f"unknown profile {profile!r}")
