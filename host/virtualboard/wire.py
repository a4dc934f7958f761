"""The serial line between host and virtual board: both directions paced to baud/10 bytes per second.

Host to board: a pump thread drains the transport as soon as the host writes (a USB-serial adapter
takes bytes at once, up to its buffer) and gives every byte the time the line would deliver it:
back to back after the previous byte while the line is busy, or from the moment it was read when
the line was idle. The board's UART takes arrived bytes lazily (`take`), so a board busy computing
still sees exactly the bytes that arrived meanwhile, and its RX ring overflows exactly as a real
one would. Board to host: `transmit` blocks like MaixPy's UART.write until the bytes are on the
line, handing them to the host in FIFO-sized pieces at their pace.

Faults (faults.py) are applied to bytes as they enter the line, in both directions. A silence makes
the line carry nothing either way for a while; a close makes the transport vanish and come back.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from .faults import FaultInjector, FaultSpec
from .transport import Transport

TX_PIECE = 64  # bytes handed to the host at once (MaixPy's UART.write pushes a FIFO at a time)
ADAPTER_BUFFER = 4096  # bytes a USB-serial adapter holds before the host's write blocks


@dataclass
class _Segment:
    start: float  # byte j arrives at start + (j + 1) * byte_s
    data: bytes
    taken: int = 0


@dataclass
class LineStats:
    bytes_to_board: int = 0
    bytes_from_board: int = 0


class Line:
    """One UART line; it outlives board resets, as the cable does."""

    def __init__(self, transport: Transport, baud: int, faults: FaultSpec | None = None, seed: int = 0) -> None:
        self.transport = transport
        self.faults = FaultInjector(faults or FaultSpec(), seed)
        self.stats = LineStats()
        self._byte_s = 10.0 / baud
        self._cond = threading.Condition()
        self._segments: deque[_Segment] = deque()
        self._resets: deque[float] = deque()
        self._rx_free = 0.0  # when the line has delivered the last scheduled byte
        self._tx_free = 0.0
        self._silent_until = 0.0  # a silence fault: nothing crosses the line before then
        self._silent_from = 0.0
        self._closed = False
        self._pump = threading.Thread(target=self._pump_loop, name="line-rx", daemon=True)
        self._pump.start()

    # -- configuration -------------------------------------------------------------------------

    @property
    def baud(self) -> int:
        return round(10.0 / self._byte_s)

    def set_baud(self, baud: int) -> None:
        with self._cond:
            self._byte_s = 10.0 / baud

    def close(self) -> None:
        self._closed = True
        self.transport.close()

    # -- host to board ---------------------------------------------------------------------------

    def _pump_loop(self) -> None:
        while not self._closed:
            now = time.monotonic()
            backlog = self._backlog(now)
            if backlog >= ADAPTER_BUFFER:  # adapter full: the host's writes wait in its tty queue
                time.sleep(min(0.005, (backlog - ADAPTER_BUFFER // 2) * self._byte_s))
                continue
            try:
                if not self.transport.wait_readable(0.05):
                    continue
                data = self.transport.read(ADAPTER_BUFFER - backlog)
            except (OSError, ValueError):
                if self._closed:
                    return
                raise
            if data:
                self._schedule(data, time.monotonic())

    def _backlog(self, now: float) -> int:
        """Bytes accepted from the host that have not yet crossed the line."""
        with self._cond:
            return max(0, int((self._rx_free - now) / self._byte_s))

    def silent(self, when: float) -> bool:
        return self._silent_from <= when < self._silent_until

    def _schedule(self, data: bytes, now: float) -> None:
        faulted = self.faults.apply(data, "rx")
        self.stats.bytes_to_board += len(data)
        if self.silent(now):
            return  # the line is dead: these bytes never arrive
        vanish = 0.0
        payload = faulted.data
        for index, kind in faulted.events:  # what follows the event's frame is lost with the line
            payload = payload[:index + 1]
            if kind == "close":
                vanish = self.faults.spec.close_s
            break
        with self._cond:
            start = max(self._rx_free, now)
            stalls = dict(faulted.stalls)
            resets = set(faulted.resets)
            cuts = sorted({s for s in stalls if s < len(payload)} | {0, len(payload)})
            for lo, hi in zip(cuts, cuts[1:]):
                start += stalls.get(lo, 0.0)
                piece = payload[lo:hi]
                self._segments.append(_Segment(start, piece))
                for i in sorted(r for r in resets if lo <= r < hi):
                    self._resets.append(start + (i - lo + 1) * self._byte_s)
                start += len(piece) * self._byte_s
            self._rx_free = start
            if faulted.events and faulted.events[0][1] == "silence":
                self._silent_from, self._silent_until = start, start + self.faults.spec.silence_s
            self._cond.notify_all()
        if vanish:
            self.transport.vanish(vanish)

    def take(self, now: float) -> tuple[bytes, bool]:
        """Bytes that have arrived by `now` (in order), and whether a reset fault fired first."""
        with self._cond:
            reset = bool(self._resets) and self._resets[0] <= now
            cutoff = self._resets.popleft() if reset else now
            out = bytearray()
            while self._segments:
                seg = self._segments[0]
                arrived = min(len(seg.data), max(0, math.floor((cutoff - seg.start) / self._byte_s + 1e-9)))
                if arrived > seg.taken:
                    out += seg.data[seg.taken:arrived]
                    seg.taken = arrived
                if seg.taken < len(seg.data):
                    break
                self._segments.popleft()
            return bytes(out), reset

    def next_arrival(self) -> float | None:
        with self._cond:
            if not self._segments:
                return None
            seg = self._segments[0]
            return seg.start + (seg.taken + 1) * self._byte_s

    def wait_for_bytes(self, timeout: float) -> None:
        """Sleep until the host writes something (or `timeout` passes)."""
        with self._cond:
            if not self._segments:
                self._cond.wait(timeout)

    def discard_arrived(self) -> None:
        """Bytes that came while the board was not listening (booting) are gone."""
        now = time.monotonic()
        self.take(now)
        with self._cond:
            while self._resets and self._resets[0] <= now:
                self._resets.popleft()

    def reset_due(self, now: float) -> bool:
        with self._cond:
            return bool(self._resets) and self._resets[0] <= now

    # -- board to host ---------------------------------------------------------------------------

    def transmit(self, data: bytes) -> None:
        """Send bytes to the host at the line's pace; returns when the last one is on the line."""
        faulted = self.faults.apply(bytes(data), "tx")
        self.stats.bytes_from_board += len(data)
        stalls = dict(faulted.stalls)
        t = max(self._tx_free, time.monotonic())
        cuts = sorted(set(stalls) | set(range(0, len(faulted.data), TX_PIECE)) | {len(faulted.data)})
        for lo, hi in zip(cuts, cuts[1:]):
            t += stalls.get(lo, 0.0) + (hi - lo) * self._byte_s
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not self.silent(t):
                self.transport.write(faulted.data[lo:hi])
        self._tx_free = t
