"""How many data bytes to put in a frame, from the error rate the host measures on the line.

A frame of n bytes on the wire arrives whole with probability (1 - p)^n when each byte is damaged,
dropped or duplicated with probability p; every frame also costs a fixed overhead (header, CRC,
chunk header, COBS, delimiter). The useful share of the line,
(n / (n + h)) * (1 - p)^(n + h), is largest near n = sqrt(h / p): ~850-byte frames on a clean line,
tens of bytes when one byte in a few hundred goes wrong. The host learns p from its own frames
(moving averages of the fraction lost and of their size), so frames shrink as soon as losses start
and grow back, frame by frame, once the line is clean again.
"""

from __future__ import annotations

import math

OVERHEAD = 24  # bytes per frame besides its data (INFER_CHUNK: header 6, chunk header 12, CRC 4, COBS, 0x00)
GAIN = 0.05  # weight of one frame in the moving averages
MIN_DATA = 16  # the smallest chunk: still 30 % data on the wire
CLEAN = 2e-5  # per-byte error rate below which frames are as large as the board takes
LOSSY = 0.02  # frames lost (moving average) above which requests go one at a time


class FrameSizer:
    def __init__(self, largest: int, smallest: int = MIN_DATA) -> None:
        self.largest = largest
        self.smallest = min(smallest, largest)
        self.lost = 0.0  # moving average of the fraction of frames lost
        self.size = float(largest + OVERHEAD)  # moving average of frame size on the wire

    def note(self, wire_bytes: int, lost: bool) -> None:
        self.lost += GAIN * ((1.0 if lost else 0.0) - self.lost)
        self.size += GAIN * (wire_bytes - self.size)

    @property
    def byte_error(self) -> float:
        """The per-byte error rate that explains the frames lost lately."""
        return -math.log(1.0 - min(self.lost, 0.95)) / max(1.0, self.size)

    @property
    def lossy(self) -> bool:
        """Send requests one at a time (losses resent from the board's offset) rather than pipelined (a
        loss costs the whole request)? Measured on the virtual board at 2e-4 and 2e-3 per byte, the
        frame loss rate is as good a switch as the expected errors per request, and simpler."""
        return self.lost >= LOSSY

    def chunk(self) -> int:
        p = self.byte_error
        if p < CLEAN:
            return self.largest
        best = OVERHEAD / 2 + math.sqrt(OVERHEAD * OVERHEAD / 4 + OVERHEAD / p)
        return max(self.smallest, min(self.largest, int(best)))
