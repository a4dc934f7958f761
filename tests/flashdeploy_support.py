"""Bytes for the flash/deploy tests: minimal kmodels that k210.converters.kmodel accepts, kflash's stub."""

from __future__ import annotations

import binascii
import random
import re
import struct
import zlib
from pathlib import Path


def filler(size: int, seed: int) -> bytes:
    """Deterministic bytes that include SLIP's 0xC0 and 0xDB, so escaping is exercised."""
    data = bytearray(random.Random(seed).randbytes(size))
    for index in range(0, size, 97):
        data[index] = 0xC0 if index % 2 else 0xDB
    return bytes(data)


def kmodel_v5(size: int = 40_000, seed: int = 5) -> bytes:
    """A kmodel v5 (nncase 1.x layout): one stackvm module, one function, u8[1,28,28,1] -> f32[1,2]."""
    tensors = b""
    for dtype, shape, nbytes in ((4, (1, 28, 28, 1), 784), (9, (1, 2), 8)):
        tensors += struct.pack("<BBHII", 0, dtype, 0, 0, nbytes) + struct.pack(f"<I{len(shape)}I", len(shape), *shape)
    function = struct.pack("<8I", 32, 32 + len(tensors), 784, 8, 1, 1, 0, 0) + tensors
    pool = struct.pack("<B3sI", 3, b"\0\0\0", 4096)
    body_size = 48 + len(pool) + len(function)
    module_size = max(body_size, size - 32)
    module = struct.pack("<16s8I", b"stackvm", 1, 48, module_size, 1, 0, 0, 1, 0) + pool + function
    module += filler(module_size - len(module), seed)
    return struct.pack("<4s7I", b"LDMK", 5, 32, 0, 8, 1, 0, 0) + module


def kmodel_v4(size: int = 30_000, seed: int = 4) -> bytes:
    """A kmodel v4 (nncase 0.2 layout) with one input and one output."""
    header = struct.pack("<4s9I", b"LDMK", 4, 0, 0, 0, 65536, 3, 1, 1, 0)
    ranges = struct.pack("<4I", 1, 1, 0, 784) + struct.pack("<4i", 1, 1, 28, 28) + struct.pack("<4I", 1, 0, 784, 8)
    head = header + ranges
    return head + filler(max(0, size - len(head)), seed)


def firmware_bin(size: int = 150_000, seed: int = 1) -> bytes:
    """Starts as a Kendryte SDK image does (crt.S: `j` over the word 0xdeadbeef), so flash takes it."""
    entry = struct.pack("<II", 0x0100006F, 0xDEADBEEF)  # jal x0, +16; .word 0xdeadbeef
    return entry + filler(max(0, size - len(entry)), seed)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def kflash_isp_stub() -> bytes:
    """The flash stub kflash 1.1.6 loads into SRAM, read from the installed kflash.py (not copied here)."""
    import kflash

    source = Path(kflash.__file__).read_text()
    match = re.search(r"ISP_PROG = '([0-9a-f]+)'", source)
    assert match, "kflash.py no longer embeds ISP_PROG as a hex string"
    return zlib.decompress(binascii.unhexlify(match.group(1)))
