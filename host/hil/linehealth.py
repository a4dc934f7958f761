"""What arrives from a board: bytes, whole frames and damaged ones, and what that says about the line.

A board that does not answer a request is not always silent: on a noisy line (a bad cable, a
USB hub, a baud rate the adapter cannot hold) it answers, and the answers arrive damaged (bad CRC,
bad COBS, cut short). The host counts them as they arrive (k210wire's FrameDecoder does), so a
timeout can say "the line is damaging 62 % of frames" and what to do, instead of "the board stopped
answering".
"""

from __future__ import annotations

from dataclasses import dataclass

from .channel import Channel

NOISY_SHARE = 0.05  # damaged frames above this share of all arriving: a diagnosis worth giving on its own


@dataclass(frozen=True)
class LineCount:
    bytes: int = 0
    frames: int = 0  # whole frames (CRC right)
    bad_crc: int = 0
    bad_cobs: int = 0
    cut: int = 0  # too short or too long to be a frame

    @classmethod
    def of(cls, channel: Channel) -> LineCount:
        d = channel._decoder  # the counts live in k210wire's decoder
        return cls(channel.bytes_seen, d.frames, d.bad_crc, d.bad_cobs, d.runts + d.overruns)

    def __sub__(self, other: LineCount) -> LineCount:
        return LineCount(self.bytes - other.bytes, self.frames - other.frames, self.bad_crc - other.bad_crc,
                         self.bad_cobs - other.bad_cobs, self.cut - other.cut)

    @property
    def damaged(self) -> int:
        return self.bad_crc + self.bad_cobs + self.cut

    @property
    def damaged_share(self) -> float:
        total = self.frames + self.damaged
        return self.damaged / total if total else 0.0

    def as_dict(self) -> dict[str, int]:
        return {"bytes": self.bytes, "frames": self.frames, "bad_crc": self.bad_crc, "bad_cobs": self.bad_cobs,
                "cut": self.cut}


def damage_phrase(count: LineCount, baud: int) -> str:
    """'the line is damaging N % of frames (...): lower the baud ...', or '' when nothing came damaged."""
    if not count.damaged or count.damaged_share < NOISY_SHARE:
        return ""
    kinds = ", ".join(f"{n} {what}" for n, what in ((count.bad_crc, "bad CRC"), (count.bad_cobs, "COBS errors"),
                                                     (count.cut, "cut short or overlong")) if n)
    return (f"the line is damaging {100 * count.damaged_share:.0f} % of frames ({count.damaged} of "
            f"{count.frames + count.damaged} frames from the board arrived damaged: {kinds}; {count.bytes} bytes "
            f"arrived): lower the baud rate (--baud, now {baud}) or check the cable and any USB hub")
