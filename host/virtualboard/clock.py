"""Stand-in for MicroPython's `utime`: ticks that wrap at 2**30, as on the board."""

from __future__ import annotations

import time
import types

TICKS_PERIOD = 1 << 30


def make_utime() -> types.ModuleType:
    def ticks_us() -> int:
        return (time.perf_counter_ns() // 1000) % TICKS_PERIOD

    def ticks_ms() -> int:
        return (time.perf_counter_ns() // 1_000_000) % TICKS_PERIOD

    def ticks_diff(end: int, start: int) -> int:
        return ((end - start + TICKS_PERIOD // 2) % TICKS_PERIOD) - TICKS_PERIOD // 2

    def ticks_add(ticks: int, delta: int) -> int:
        return (ticks + delta) % TICKS_PERIOD

    module = types.ModuleType("utime")
    module.__dict__.update(
        ticks_us=ticks_us, ticks_ms=ticks_ms, ticks_cpu=ticks_us, ticks_diff=ticks_diff, ticks_add=ticks_add,
        sleep=time.sleep, sleep_ms=lambda ms: time.sleep(ms / 1000), sleep_us=lambda us: time.sleep(us / 1e6),
        time=lambda: int(time.time()),
    )
    return module
