"""Frames to and from one board: k210wire's encoder and streaming decoder over a Port."""

from __future__ import annotations

import logging

from k210.firmware import k210wire as w

from .messages import HOST_MAX_FRAME, Message
from .ports import Port

log = logging.getLogger("k210.hil")

SAMPLE_BYTES = 256  # raw bytes kept to say what a port that does not speak the protocol sends


class Channel:
    def __init__(self, port: Port) -> None:
        self.port = port
        self._decoder = w.FrameDecoder(HOST_MAX_FRAME)
        self._inbox: list[Message] = []
        self._seq = 0
        self.sample = bytearray()
        self.bytes_seen = 0
        self.echoes = 0  # our own requests coming back: a loopback, not a board
        self.other_versions: set[int] = set()
        self.bad_messages = 0
        self.logs: list[tuple[int, str]] = []
        self.frames_sent = 0

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def frame(self, mtype: int, payload: bytes, seq: int | None = None) -> tuple[int, bytes]:
        seq = self.next_seq() if seq is None else seq
        return seq, w.encode_frame(mtype, 0, seq, payload)

    def write(self, frame: bytes) -> float:
        """Send a frame; returns when its last byte reaches the board."""
        self.frames_sent += 1
        return self.port.write(frame)

    def poll(self, wait: float) -> list[Message]:
        """Messages that arrived within `wait` seconds (returns as soon as some bytes came)."""
        data = self.port.read(0.0 if self._inbox else wait)
        if data:
            self.bytes_seen += len(data)
            if len(self.sample) < SAMPLE_BYTES:
                self.sample += data[: SAMPLE_BYTES - len(self.sample)]
            self._decoder.feed(data, self._on_frame)
        out, self._inbox = self._inbox, []
        return out

    def unread(self, messages: list[Message]) -> None:
        """Messages taken from poll() but not handled: the next poll() returns them first."""
        self._inbox[:0] = messages

    @property
    def frames_dropped(self) -> int:
        return self._decoder.dropped()

    def _on_frame(self, frame: memoryview) -> None:
        version, mtype, flags, seq = w.parse_header(frame)
        if version != w.PROTOCOL_VERSION:
            self.other_versions.add(version)
            return
        if not flags & (w.FLAG_REPLY | w.FLAG_EVENT):
            self.echoes += 1
            return
        try:
            fields = w.decode_message(mtype, bytes(frame[w.HEADER_LEN:]))
        except w.ProtocolError as exc:
            self.bad_messages += 1
            log.debug("undecodable %s from the board: %s", w.TYPE_NAMES.get(mtype, hex(mtype)), exc)
            return
        if mtype == w.LOG:
            self.logs.append((fields["level"], fields["text"]))
            log.info("board %s: %s", self.port.url, fields["text"])
            return
        self._inbox.append(Message(mtype, flags, seq, fields))
