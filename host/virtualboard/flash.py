"""The virtual board's SPI flash: images written at offsets, as kflash writes them."""

from __future__ import annotations


class Flash:
    """The board's SPI flash, as images written at offsets."""

    def __init__(self) -> None:
        self._images: dict[int, bytes] = {}

    def write(self, offset: int, data: bytes) -> None:
        self._images[offset] = data

    def read(self, offset: int, size: int = 0) -> bytes:
        if offset not in self._images:
            raise OSError(f"nothing flashed at 0x{offset:x}")
        data = self._images[offset]
        return data[:size] if size else data
