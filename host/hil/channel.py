"""Frames to and from one board: k210wire's encoder and streaming decoder over a Port."""

from __future__ import annotations

import logging
from collections import deque

from k210.firmware import k210wire as w

from .messages import HOST_MAX_FRAME, Message, printable
from .ports import Port

log = logging.getLogger("k210.hil")

SAMPLE_BYTES = 256  # raw bytes kept to say what a port that does not speak the protocol sends
LOGS_KEPT = 256  # the board's last LOG lines kept; older ones are only counted (a chatty board cannot fill memory)


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
        self.logs: deque[tuple[int, str]] = deque(maxlen=LOGS_KEPT)  # the last LOG frames (level, text)
        self.logs_seen = 0  # every LOG frame, those no longer kept included
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
    def logs_dropped(self) -> int:
        """LOG frames received but no longer kept."""
        return self.logs_seen - len(self.logs)

    def logs_since(self, seen: int) -> list[tuple[int, str]]:
        """The LOG lines that came after the first `seen` (as many of them as are still kept)."""
        new = self.logs_seen - seen
        return list(self.logs)[-new:] if new > 0 else []

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
        for key, value in fields.items():  # a board's texts end up in one-line errors and on terminals
            if isinstance(value, str):
                fields[key] = printable(value)
        if mtype == w.LOG:
            self.logs.append((fields["level"], fields["text"]))
            self.logs_seen += 1
            if self.logs_seen <= LOGS_KEPT:  # a flood is not echoed line by line
                log.info("board %s: %s", self.port.url, fields["text"])
            elif self.logs_seen == LOGS_KEPT + 1:
                log.info("board %s: more LOG lines; only the last %d are kept", self.port.url, LOGS_KEPT)
            return
        self._inbox.append(Message(mtype, flags, seq, fields))
