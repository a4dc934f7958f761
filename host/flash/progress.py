"""A tqdm bar per file from kflash's progress callback (the flash stub first, then each file)."""

from __future__ import annotations

import sys
from typing import TextIO


class TqdmProgress:
    """Callable as kflash_driver's ProgressCallback; `enabled=None` lets tqdm hide bars off a terminal."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self._disable = None if enabled is None else not enabled
        self._stream = stream or sys.stderr
        self._what: str | None = None
        self._bar = None

    def __call__(self, what: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if what != self._what or self._bar is None:
            self.close()
            self._what = what
            label = "flash stub" if what == "ISP" else what
            self._bar = tqdm(
                total=total,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self._stream,
                disable=self._disable,
                leave=True,
            )
        self._bar.update(max(0, done - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
