"""The board's storage for its sample cache, and its zlib, as time and space (issue 15).

`StorageArea` is the SD card (or flash filesystem) that firmware/maixpy/k210cache.py keeps samples
on: a directory with a size (writes past it fail with ENOSPC, as a full card does), a write and a read
speed (the firmware waits for its bytes), and an optional power cut in the middle of the Nth write
(the board resets with half a file on the card). It outlives reboots, like a card; given a directory
it also outlives the board, so a second HIL run finds what the first one kept. `make_uzlib` is
MicroPython's `uzlib` with the time the K210 takes to inflate.

The speeds are assumptions, not measurements (no board here): SD over the K210's SPI at ~1 MB/s
written and ~2.5 MB/s read through FatFs, uzlib at ~6 MB/s of output on the 400 MHz core. They are
options of `k210 board`, printed by benchmarks.hil_link next to the figures they produce.
"""

from __future__ import annotations

import errno
import os
import time
import types
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .uart import BoardReboot

SD_BYTES = 32 * 1024 * 1024
SD_WRITE_BPS = 1_000_000.0
SD_READ_BPS = 2_500_000.0
INFLATE_BPS = 6_000_000.0  # bytes of output per second


@dataclass
class StorageSpec:
    size: int = SD_BYTES  # 0: no card
    write_bps: float = SD_WRITE_BPS
    read_bps: float = SD_READ_BPS
    cut_at: int = 0  # the Nth file write (from this board's start) loses power halfway; 0: never
    directory: Path | None = None  # where the card's files live (default: in the board's work directory)


def _wait(nbytes: int, bps: float) -> None:
    if bps > 0 and nbytes > 0:
        time.sleep(nbytes / bps)


class _File:
    """A file on the area: its bytes take the area's time; writes stop at the area's size."""

    def __init__(self, area: StorageArea, name: str, mode: str) -> None:
        self.area = area
        self.name = name
        self.writing = "w" in mode
        if self.writing and (area.root / name).exists():
            area.bytes_used -= (area.root / name).stat().st_size  # "wb" starts the file over
        self.f = open(area.root / name, mode)  # noqa: SIM115 - closed by close()
        self.written = 0

    def readinto(self, buf: Any) -> int:
        n = self.f.readinto(buf)
        _wait(n or 0, self.area.spec.read_bps)
        return n or 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        area = self.area
        if area.used() + len(data) > area.spec.size:
            raise OSError(errno.ENOSPC, "no space left on the card")
        if area.cutting(self):
            half = data[: len(data) // 2]
            self.f.write(half)
            self.f.close()
            area.bytes_used += len(half)
            raise BoardReboot("power cut while writing the card")
        self.f.write(data)
        self.written += len(data)
        area.bytes_used += len(data)
        _wait(len(data), area.spec.write_bps)
        return len(data)

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()
            if self.writing:
                self.area.writes += 1


class StorageArea:
    """The Volume interface of k210cache (names, size, open, remove, rename) over a directory."""

    def __init__(self, spec: StorageSpec, default_dir: Path) -> None:
        self.spec = spec
        self.root = Path(spec.directory or default_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.writes = 0  # completed file writes
        self.cuts = 0
        self.bytes_used = sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())

    def used(self) -> int:
        return self.bytes_used

    def cutting(self, f: _File) -> bool:
        if self.spec.cut_at and self.writes + 1 == self.spec.cut_at and f.written > 0 and not self.cuts:
            self.cuts += 1
            return True
        return False

    def names(self) -> list[str]:
        return sorted(os.listdir(self.root), key=lambda n: (self.root / n).stat().st_mtime_ns)

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def open(self, name: str, mode: str) -> _File:
        return _File(self, name, mode)

    def remove(self, name: str) -> None:
        size = self.size(name)
        os.remove(self.root / name)
        self.bytes_used -= size

    def rename(self, old: str, new: str) -> None:
        os.replace(self.root / old, self.root / new)


def damage_entry(directory: Path, index: int = 0) -> str:
    """Flip one byte in the middle of the index-th cache entry (sorted by name): a card gone bad."""
    entries = sorted(p for p in Path(directory).iterdir() if p.suffix == ".smp")
    return damage_file(entries[index % len(entries)])


def damage_file(path: Path) -> str:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    return path.name


def make_uzlib(inflate_bps: float) -> types.ModuleType:
    """MicroPython's `uzlib` (decompress only), taking the board's time per byte of output."""

    def decompress(data: Any, wbits: int = 0, bufsize: int = 0) -> bytes:
        out = zlib.decompress(bytes(data), wbits if wbits else zlib.MAX_WBITS)
        _wait(len(out), inflate_bps)
        return out

    module = types.ModuleType("uzlib")
    module.__dict__.update(decompress=decompress)
    return module
