"""How late this process's own threads run: time the host was not scheduled is not the line's fault.

On a busy machine (two cores shared with compilers, TF, other boards) the harness can be kept off
the CPU for tens or hundreds of milliseconds. A reply that arrived meanwhile is read late, and a
timer that counted that time as the board's would call a frame lost that was not. A watcher thread
sleeps in short ticks and notes how late each wake-up is: that lateness is the host's scheduling
delay, which the reply timers add to their deadlines (session.py) instead of resending.
"""

from __future__ import annotations

import threading
import time
from collections import deque

TICK_S = 0.005
NOTICE_S = 0.002  # lateness below this is ordinary timer jitter
KEEP_S = 120.0  # stalls older than this are forgotten (no wait lasts that long)


class SchedulingDelay:
    """Stalls of this process as (when it woke, how late), from a daemon thread."""

    def __init__(self, tick: float = TICK_S) -> None:
        self.tick = tick
        self._stalls: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self.total_s = 0.0  # all lateness noticed since start
        self._thread = threading.Thread(target=self._watch, name="scheduling-delay", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        expected = time.monotonic() + self.tick
        while True:
            time.sleep(max(0.0, expected - time.monotonic()))
            now = time.monotonic()
            late = now - expected
            if late > NOTICE_S:
                with self._lock:
                    self._stalls.append((now, late))
                    self.total_s += late
                    while self._stalls and self._stalls[0][0] < now - KEEP_S:
                        self._stalls.popleft()
            expected = now + self.tick

    def stalled(self, since: float) -> float:
        """Seconds this process was kept from running after `since` (time.monotonic), as far as noticed."""
        with self._lock:
            total = 0.0
            for woke, late in reversed(self._stalls):
                if woke - late < since:  # began before `since`: only its part after it counts
                    total += max(0.0, woke - since)
                    break
                total += late
            return total


_shared: SchedulingDelay | None = None
_shared_lock = threading.Lock()


def host_delay() -> SchedulingDelay:
    """The process's one watcher, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SchedulingDelay()
        return _shared
