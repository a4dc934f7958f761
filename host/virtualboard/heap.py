"""Stand-in for MicroPython's `gc`.

main.py calls gc.collect() before every inference to keep the small MicroPython heap tidy. A full
CPython collection in a process holding nncase and numpy costs milliseconds and frees nothing
reference counting has not already freed, so collect() here only counts calls. Anything else falls
through to CPython's gc, for the libraries the board process shares it with.
"""

from __future__ import annotations

import gc as _cpython_gc
import types
from typing import Any

from k210.core import firmwares

HEAP_BYTES = 512 * 1024  # MaixPy's default GC heap
# Each firmware's GC heap (CONFIG_MAIXPY_GC_HEAP_SIZE in its projects' config_defaults.mk): MaixPy-v1
# 0x80000; CanMV main and feat/kpu 0xBB9B0. mem_free() here is a constant, not a measurement, so
# main.py's heap sizing (firmware/maixpy/main.py input_limit) takes its configured max_input as is;
# tests/test_micropython_firmwares.py measures the real sizes in MicroPython 1.10 with these heaps.
FIRMWARE_HEAP_BYTES = {  # k210.core.firmwares holds the figures
    "maixpy": firmwares.MAIXPY.build_for(4).heap_bytes,
    "canmv": firmwares.CANMV.build_for(4).heap_bytes,
    "canmv-kpu": firmwares.CANMV.build_for(5).heap_bytes,
}


def make_gc() -> types.ModuleType:
    module = types.ModuleType("gc")
    calls = {"collect": 0}

    def collect() -> int:
        calls["collect"] += 1
        return 0

    def __getattr__(name: str) -> Any:  # noqa: N807 - module-level __getattr__ (PEP 562)
        return getattr(_cpython_gc, name)

    module.__dict__.update(
        collect=collect, calls=calls, mem_free=lambda: HEAP_BYTES // 2, mem_alloc=lambda: HEAP_BYTES // 2,
        enable=lambda: None, disable=lambda: None, isenabled=lambda: True, threshold=lambda *a: -1,
        __getattr__=__getattr__,
    )
    return module
