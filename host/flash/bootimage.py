"""Is this file a K210 firmware image, the kind `k210 flash --firmware-bin` writes at 0x0?

What is known of the format (kflash.py, the Kendryte SDK's crt.S): the boot ROM reads at 0x0 a
one-byte AES flag (0 or 1), a u32 little-endian size, that many image bytes and their SHA-256, copies
the image into SRAM at 0x80000000 and jumps to its first byte. kflash writes that header itself around
the raw .bin it is given. So the .bin is raw RISC-V code whose first instruction is the entry; every
firmware built on the Kendryte SDK (MaixPy, CanMV, the C runner) starts with crt.S's `j 1f` followed by
the word 0xdeadbeef. A file that is not such an image (a kmodel, a pickle, a text file) would be
written at 0x0 and leave the board unable to boot until the next ISP flash.
"""

from __future__ import annotations

import hashlib
import struct

SRAM_BYTES = 8 * 1024 * 1024  # 6 MiB SRAM + 2 MiB AI SRAM from 0x80000000: the most the boot ROM can load
KFLASH_HEAD = 5  # AES flag, u32 size
SHA_LEN = 32
SDK_MARK = b"\xef\xbe\xad\xde"  # crt.S: `.word 0xdeadbeef` right after the entry jump

# Opcodes (bits 6..0) of 32-bit instructions a firmware may start with: jal, jalr, auipc, lui, csr*, addi/li.
_ENTRY_OPCODES = {0x6F: "jal", 0x67: "jalr", 0x17: "auipc", 0x37: "lui", 0x73: "csr", 0x13: "addi"}


def kflash_wrapped(data: bytes) -> bool:
    """True for a flash dump: kflash's header (flag, size, image, SHA-256) already around an image."""
    if len(data) < KFLASH_HEAD + SHA_LEN or data[0] not in (0, 1):
        return False
    size = struct.unpack_from("<I", data, 1)[0]
    end = KFLASH_HEAD + size
    return end + SHA_LEN <= len(data) and hashlib.sha256(data[:end]).digest() == data[end:end + SHA_LEN]


def entry_instruction(data: bytes) -> str | None:
    """The first instruction's kind when it is one a firmware entry starts with, else None."""
    if len(data) < 4:
        return None
    half = data[0] | data[1] << 8
    if half & 0b11 != 0b11:  # a compressed (16-bit) instruction: c.j or c.li
        quadrant, funct3 = half & 0b11, half >> 13
        if quadrant == 1 and funct3 == 0b101:
            return "c.j"
        if quadrant == 1 and funct3 == 0b010 and half != 0x4001:
            return "c.li"
        return None
    word = struct.unpack_from("<I", data, 0)[0]
    return _ENTRY_OPCODES.get(word & 0x7F)


def boot_image_problem(name: str, data: bytes) -> str | None:
    """Why `data` is not a K210 firmware .bin (one sentence), or None when it looks like one."""
    if len(data) > SRAM_BYTES:
        return (f"firmware {name} has {len(data):,} bytes; the K210 boot ROM loads at most {SRAM_BYTES:,} "
                "(its SRAM)")
    if kflash_wrapped(data):
        return (f"firmware {name} already carries kflash's boot header (a flash dump?); give the raw .bin, "
                "kflash adds the header")
    entry = entry_instruction(data)
    if entry is None or len(data) < 64:
        return (f"firmware {name} is not a K210 firmware image: it does not start with a RISC-V entry "
                f"instruction (first bytes {data[:8].hex()})")
    return None


def sdk_image(data: bytes) -> bool:
    """Built on the Kendryte SDK: crt.S's entry jump, then 0xdeadbeef."""
    return entry_instruction(data) in ("jal", "c.j") and SDK_MARK in data[2:8]
