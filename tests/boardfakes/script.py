"""A host's side of a session written ahead of time: frames appended to one byte stream that a runner
under test (CPython or real MicroPython, boardfakes.micropython.run_session) reads as its UART input."""

from __future__ import annotations

from k210.firmware import k210wire as w


class Script:
    def __init__(self) -> None:
        self.seq = 0
        self.data = bytearray()

    def send(self, mtype: int, fields: dict | None = None, *, damage: str | None = None) -> None:
        self.seq += 1
        payload = w.encode_payload(mtype, fields or {}) if mtype in w.TYPE_NAMES else b""
        frame = bytearray(w.encode_frame(mtype, 0, self.seq, payload))
        if damage == "corrupt":  # one byte flipped mid-frame: the runner drops it on its CRC
            frame[len(frame) // 2] ^= 0x21 if frame[len(frame) // 2] not in (0, 0x21) else 0x03
        self.data += frame

    def raw(self, data: bytes) -> None:
        self.data += data
