"""Progress on long work: a tqdm bar on a terminal, a plain line every few seconds off one (CI logs)."""

from __future__ import annotations

import os
import sys
import time


class PlainProgress:
    """tqdm's interface for logs: a plain line every `every` seconds and one at the end, nothing redrawn."""

    def __init__(self, total: int | None, desc: str, unit: str, every: float, stream=None) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = stream or sys.stderr
        self.n = 0
        self.started = self._last = time.monotonic()
        self._closed = False
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._print()

    def _print(self, final: bool = False, stopped: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        # "done" only for work that was: a run that failed or fell short ends "stopped".
        short = stopped or (self.total is not None and self.n < self.total)
        done = (" stopped" if short else " done") if final else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{pct}, {elapsed:.0f} s, {rate:.1f} {self.unit}/s{extra}{done}",
              file=self.stream, flush=True)

    def set_postfix(self, **values: object) -> None:  # tqdm's interface
        self.postfix = " ".join(f"{k} {v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self, stopped: bool = False) -> None:
        if not self._closed:
            self._closed = True
            if self.n and time.monotonic() - self.started >= self.every:
                self._print(final=True, stopped=stopped)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(stopped=exc_type is not None)


def progress_every() -> float:
    """Seconds between plain progress lines off a terminal ($K210_PROGRESS_EVERY, default 5)."""
    try:
        return max(0.0, float(os.environ.get("K210_PROGRESS_EVERY", "5")))
    except ValueError:
        return 5.0


def progress(total: int, desc: str, unit: str = "img"):
    """A bar on a terminal; off one (CI logs, pipes) a plain line every few seconds."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)
    return PlainProgress(total, desc, unit, progress_every())
