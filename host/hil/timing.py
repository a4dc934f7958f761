"""How long to wait for a board's reply beyond the line's own time (RFC 6298's estimator).

The host knows when each frame's last byte reaches the board (bytes ÷ baud/10, queued behind what
was sent before), so what it learns and waits for is only the rest: the board's work, the reply's
way back, OS and USB latency. A tight, learnt wait matters on a lossy line: every frame lost
without a trace costs one timeout.
"""

from __future__ import annotations

INITIAL_S = 0.5  # before any reply was timed: a real board's first inference can be slow
FLOOR_S = 0.03
CEILING_S = 10.0


class ReplyTimer:
    def __init__(self, initial: float = INITIAL_S, floor: float = FLOOR_S, ceiling: float = CEILING_S) -> None:
        self.initial, self.floor, self.ceiling = initial, floor, ceiling
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._backoff = 1.0

    def sample(self, delay: float) -> None:
        """A reply came `delay` seconds after its request had fully reached the board."""
        delay = max(0.0, delay)
        if self.srtt is None:
            self.srtt, self.rttvar = delay, delay / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - delay)
            self.srtt = 0.875 * self.srtt + 0.125 * delay
        self._backoff = 1.0

    def timed_out(self) -> None:
        """A wait ran out: wait longer next time until a reply is timed again (a board may be slow)."""
        self._backoff = min(self._backoff * 2, 64.0)

    @property
    def rto(self) -> float:
        base = self.initial if self.srtt is None else self.srtt + 4 * self.rttvar
        return min(self.ceiling, max(self.floor, base) * self._backoff)
