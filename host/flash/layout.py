"""The K210's 16 MiB SPI flash: sizes, conventional offsets and the firmware image format."""

from __future__ import annotations

import hashlib
import struct

from k210.core.firmwares import KMODEL_ADDRESS

FLASH_SIZE = 16 * 1024 * 1024
SECTOR_SIZE = 4 * 1024  # the smallest erase unit of the SPI NOR flash
KFLASH_BLOCK_SIZE = 64 * 1024  # kflash's write frame; its stub may erase in 64 KiB blocks
MAIXPY_KMODEL_ADDRESS = KMODEL_ADDRESS  # MaixPy's convention: the firmware stays below 3 MiB

# kflash writes a firmware (sha256Prefix true) as [flags u8][length u32 LE][data][sha256 of all before].
FIRMWARE_HEADER_SIZE = 5
FIRMWARE_DIGEST_SIZE = 32
FIRMWARE_OVERHEAD = FIRMWARE_HEADER_SIZE + FIRMWARE_DIGEST_SIZE
FLAG_AES = 0x01  # firmware is AES-128-CBC encrypted (kflash --key); never used here
FLAG_DIO = 0x02  # kflash's io_mode "dio" (its default) sets this bit; "qio" leaves it clear

IO_MODES = ("dio", "qio")


def firmware_flash_image(firmware: bytes, io_mode: str = "dio") -> bytes:
    """The bytes kflash 1.1.6 writes at 0x0 for `firmware`, which the boot ROM checks before running it."""
    if io_mode not in IO_MODES:
        raise ValueError(f"io_mode must be one of {IO_MODES}, not {io_mode!r}")
    flags = FLAG_DIO if io_mode == "dio" else 0
    body = bytes([flags]) + struct.pack("<I", len(firmware)) + firmware
    return body + hashlib.sha256(body).digest()


def read_firmware_image(flash: bytes | bytearray | memoryview) -> tuple[int, bytes] | None:
    """(flags, firmware) when `flash` starts with a firmware image whose digest matches, else None."""
    if len(flash) < FIRMWARE_OVERHEAD:
        return None
    flags = flash[0]
    (length,) = struct.unpack_from("<I", flash, 1)
    end = FIRMWARE_HEADER_SIZE + length
    if end + FIRMWARE_DIGEST_SIZE > len(flash):
        return None
    body = bytes(flash[:end])
    if hashlib.sha256(body).digest() != bytes(flash[end : end + FIRMWARE_DIGEST_SIZE]):
        return None
    return flags, body[FIRMWARE_HEADER_SIZE:]


def sectors_spanned(address: int, length: int) -> range:
    """Indexes of the 4 KiB sectors that bytes [address, address + length) touch."""
    if length <= 0:
        return range(0)
    return range(address // SECTOR_SIZE, (address + length - 1) // SECTOR_SIZE + 1)


def blocks_spanned(address: int, length: int) -> range:
    """Indexes of the 64 KiB blocks that bytes [address, address + length) touch."""
    if length <= 0:
        return range(0)
    return range(address // KFLASH_BLOCK_SIZE, (address + length - 1) // KFLASH_BLOCK_SIZE + 1)
