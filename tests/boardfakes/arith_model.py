"""The arithmetic fake kmodel shared by the test backends (C host runner and the fake KPU modules).

Layout (little-endian), documented in firmware/c/README.md as well:
    0  u8[4]  b"LDMK" (v4, v5)        | u32 3 (v3: no magic)
    4  u32    kmodel version (4, 5)   | u32 0
    8  u8[4]  b"ARTH"
    12 u8     mul, u8 add, u16 0
    16 u32    input_len
    20 ...    padding, ignored (lets a test make a big model)
One uint8 input [input_len]; outputs: uint8 [input_len] = (x * mul + add) mod 256, and
float32 [1] = sum of the input bytes.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<4sI4sBBHI")
MAGIC = b"ARTH"


def make_arith_kmodel(version: int = 5, mul: int = 3, add: int = 7, input_len: int = 16, pad: int = 0) -> bytes:
    head = struct.pack("<II", 3, 0) if version == 3 else b"LDMK" + struct.pack("<I", version)
    body = MAGIC + struct.pack("<BBHI", mul, add, 0, input_len)
    return head + body + bytes((i * 7 + 1) & 0xFF for i in range(pad))


def parse_arith_kmodel(data: bytes) -> tuple[int, int, int, int]:
    """(version, mul, add, input_len); ValueError if it is not an arithmetic fake kmodel."""
    if len(data) < HEADER.size or data[8:12] != MAGIC:
        raise ValueError("not an arithmetic fake kmodel")
    version = 3 if data[:4] == struct.pack("<I", 3) else struct.unpack_from("<I", data, 4)[0]
    mul, add, _, input_len = struct.unpack_from("<BBHI", data, 12)
    return version, mul, add, input_len


def arith_outputs(x: bytes, mul: int, add: int) -> tuple[bytes, float]:
    return bytes((b * mul + add) & 0xFF for b in x), float(sum(x))
