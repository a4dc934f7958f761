"""A synchronous protocol client for scripts and runner tests: one request at a time, on the HIL session.

`BoardClient(port)` talks to a runner (MaixPy/CanMV main.py, the C runner, a virtual board) through
a pyserial port or anything with pyserial's `read(n)`, `write(b)`, `timeout` and `in_waiting`. It is
the same client `k210 hil` uses: frames go through Channel, every request through
BoardSession.transact (reply timeouts from the frame size and baud rate, resends with backoff until
the patience runs out, boot HELLOs with a new nonce raise BoardReset). What it adds is the plain
calls: `hello`, `model_info`, `load_model`, `infer`, `reboot`, and `send_request`/`poll_replies` for
a test that wants several frames in flight.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from k210.firmware import k210wire as w

from .hello_check import check_hello
from .messages import BoardError, BoardLinkError, BoardReset, BoardTimeout, Hello, Message, ModelInfo, Tensor
from .pipeline import covered_bytes
from .ports import Port
from .recovery import BoardRestarted
from .session import BoardSession

DEFAULT_BAUD = 1_500_000  # assumed for links without a baud rate (loop://, in-process fakes)
MAX_RESTARTS = 3  # STALE answers to one inference before it is given up
MAX_RESULT_BYTES = 64 << 20  # the largest RESULT taken: outputs of a K210 model live in its 6 MiB of SRAM


@dataclass
class ClientStats:
    frames_sent: int = 0
    retries: int = 0
    logs: list[tuple[int, str]] = field(default_factory=list)


class BoardClient:
    """One board, one request at a time. Not thread-safe."""

    def __init__(self, port: Any, *, reply_timeout: float = 0.5, retries: int = 4, infer_timeout: float = 10.0,
                 commit_timeout: float = 60.0, url: str = "", on_log: Callable[[int, str], None] | None = None):
        baud = int(getattr(port, "baudrate", None) or DEFAULT_BAUD)
        self.port = port  # the caller's port, as given
        link = Port(port, url or str(getattr(port, "port", None) or "board"), baud, use_fd=False)
        # Patience for `retries` resends, each wait twice the last (the session's backoff).
        self.session = BoardSession(link, patience=reply_timeout * (2 ** (retries + 1) - 1))
        self.session.reply_slack = reply_timeout
        self.infer_timeout = infer_timeout
        self.commit_timeout = commit_timeout
        self.on_log = on_log
        self._req = 0

    @classmethod
    def open(cls, url: str, baud: int = DEFAULT_BAUD, **kwargs: Any) -> BoardClient:
        import serial

        return cls(serial.serial_for_url(url, baudrate=baud, timeout=0), url=url, **kwargs)

    def close(self) -> None:
        self.session.port.close()

    @property
    def board(self) -> Hello | None:
        return self.session.hello

    @property
    def nonce(self) -> int | None:
        return self.session.hello.nonce if self.session.hello else None

    @property
    def stats(self) -> ClientStats:
        channel = self.session.channel
        return ClientStats(channel.frames_sent, self.session.stats.retries, list(channel.logs))

    @property
    def frames_dropped(self) -> int:
        """Frames from the board that arrived damaged (bad CRC/COBS, too short, too long)."""
        return self.session.channel.frames_dropped

    # -- the protocol ---------------------------------------------------------------------------

    def hello(self) -> Hello:
        """Start a session: the board drops half-done transfers and says what it is."""
        msg = self._call(w.HELLO_REQ, b"", (w.HELLO,), reset_ok=True)
        hello = Hello.from_fields(msg.fields)
        if hello.proto != w.PROTOCOL_VERSION:
            raise BoardLinkError(f"board speaks protocol {hello.proto}, host {w.PROTOCOL_VERSION}")
        check_hello(hello, self.session.name)
        self.session.hello = hello
        return hello

    def model_info(self) -> ModelInfo:
        return ModelInfo.from_fields(self._call(w.MODEL_INFO_REQ, b"", (w.MODEL_INFO,)).fields)

    def load_model(self, kmodel: bytes, inputs: Sequence[tuple[int, Sequence[int]]] = (),
                   outputs: Sequence[tuple[int, Sequence[int]]] = (),
                   progress: Callable[[int, int], None] | None = None) -> ModelInfo:
        """Upload a kmodel chunk by chunk; returns the board's MODEL_INFO after it checked the hash."""
        board = self._board()
        sha = hashlib.sha256(kmodel).hexdigest()
        begin = w.encode_payload(w.LOAD_BEGIN, {"size": len(kmodel), "sha256": sha,
                                                "inputs": [(d, tuple(s)) for d, s in inputs],
                                                "outputs": [(d, tuple(s)) for d, s in outputs]})
        self._call(w.LOAD_BEGIN, begin, (w.ACK,))
        offset = 0
        while offset < len(kmodel):
            data = kmodel[offset:offset + board.chunk_size]
            payload = w.encode_payload(w.LOAD_CHUNK, {"offset": offset, "data": data})
            try:
                offset = self._call(w.LOAD_CHUNK, payload, (w.ACK,)).fields["next"]
            except BoardError as e:
                if e.code != w.E_GAP:
                    raise
                offset = e.detail  # the board lost track of a chunk: go back to where it is
                continue
            if progress:
                progress(offset, len(kmodel))
        msg = self._call(w.LOAD_COMMIT, b"", (w.MODEL_INFO,), work=(len(kmodel), self.commit_timeout))
        info = ModelInfo.from_fields(msg.fields)
        if info.sha256 != sha or info.size != len(kmodel):
            raise BoardLinkError(f"board reports model {info.sha256[:16]}… of {info.size} bytes after the upload")
        return info

    def infer(self, tensor: bytes, req: int | None = None) -> tuple[list[Tensor], int]:
        """Run one inference: (output tensors, on-board inference time in microseconds)."""
        board = self._board()
        if req is None:
            self._req = (self._req + 1) & 0xFFFF
            req = self._req
        total = len(tensor)
        offset = 0
        restarts = 0
        while True:
            end = min(offset + board.chunk_size, total)
            payload = w.encode_payload(w.INFER_CHUNK, {"req": req & 0xFFFF, "total": total, "offset": offset,
                                                       "data": tensor[offset:end]})
            final = end == total
            try:
                if not final:
                    offset = self._call(w.INFER_CHUNK, payload, (w.ACK,)).fields["next"]
                    continue
                msg = self._call(w.INFER_CHUNK, payload, (w.RESULT,), work=(total, self.infer_timeout))
            except BoardError as e:
                if e.code == w.E_GAP:
                    offset = e.detail
                    continue
                if e.code == w.E_STALE and restarts < MAX_RESTARTS:
                    restarts += 1
                    offset = 0
                    continue
                raise
            fields = self._whole_result(msg)
            records = w.parse_result_blob(fields["data"], fields["n_outputs"])
            return [Tensor(dtype, shape, data) for dtype, shape, data in records], fields["micros"]

    def reboot(self, boot_timeout: float = 20.0) -> Hello:
        """Ask the board to reset and wait for its boot HELLO (a new nonce)."""
        self._call(w.REBOOT, b"", (w.ACK,))
        deadline = time.monotonic() + boot_timeout
        while (left := deadline - time.monotonic()) > 0:
            for msg in self.session.channel.poll(min(0.05, left)):
                if msg.is_event and msg.type == w.HELLO:
                    self.session.hello = Hello.from_fields(msg.fields)
                    return self.session.hello
        raise BoardTimeout(f"no boot HELLO within {boot_timeout:.1f} s of REBOOT")

    # -- several frames in flight (the caller matches replies by seq) -----------------------------

    def send_request(self, mtype: int, payload: bytes, seq: int | None = None) -> int:
        """Send one request frame; returns its seq (replies carry it)."""
        seq, frame = self.session.channel.frame(mtype, payload, None if seq is None else seq & 0xFFFF)
        self.session.channel.write(frame)
        return seq

    def poll_replies(self, timeout: float = 0.0) -> list[Message]:
        """Messages that arrived within `timeout` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            messages = self.session.channel.poll(max(0.0, min(0.05, deadline - time.monotonic())))
            if messages or time.monotonic() >= deadline:
                return messages

    # -- internals ------------------------------------------------------------------------------

    def _board(self) -> Hello:
        return self.session.hello if self.session.hello is not None else self.hello()

    def _call(self, mtype: int, payload: bytes, expect: tuple[int, ...], *, work: tuple[int, float] | None = None,
              reset_ok: bool = False) -> Message:
        logs = self.session.channel.logs_seen
        try:
            return self.session.transact(mtype, payload, expect, work=work)
        except BoardRestarted as restart:
            self.session.hello = restart.hello
            if reset_ok:  # HELLO_REQ starts a new session anyway: ask again
                return self.session.transact(mtype, payload, expect, work=work)
            raise BoardReset(restart.hello) from None
        finally:
            if self.on_log:
                for level, text in self.session.channel.logs_since(logs):
                    self.on_log(level, text)

    def _whole_result(self, first: Message) -> dict[str, Any]:
        """A RESULT bigger than one frame comes in parts with the same seq: collect them by offset."""
        f = first.fields
        if f["total"] > MAX_RESULT_BYTES:
            raise BoardLinkError(f"RESULT of request {f['req']} declares {f['total']:,} bytes; at most "
                                 f"{MAX_RESULT_BYTES:,} are taken")
        parts = {f["offset"]: f["data"]}
        deadline = time.monotonic() + self.session._reply_wait(0)
        # However its parts come (a board may send overlapping ones without end), a RESULT gets the time its
        # declared size takes on the line, twice, and never more memory than that size, twice.
        give_up = deadline + 2 * self.session.port.wire_seconds(f["total"])
        kept = len(f["data"])
        while covered_bytes(parts) < f["total"]:
            left = min(deadline, give_up) - time.monotonic()
            if left <= 0:
                raise BoardTimeout(f"RESULT of request {f['req']}: {covered_bytes(parts)} of {f['total']} bytes came")
            for msg in self.session.channel.poll(min(0.05, left)):
                if msg.type == w.RESULT and msg.seq == first.seq:
                    kept += len(msg.fields["data"])
                    if kept > 2 * f["total"] + (1 << 16):  # twice the size, and a frame of slack
                        raise BoardLinkError(f"RESULT of request {f['req']}: {kept:,} bytes of parts for "
                                             f"{f['total']:,} declared")
                    parts[msg.fields["offset"]] = msg.fields["data"]
                    deadline = time.monotonic() + self.session._reply_wait(0)
        blob = bytearray(f["total"])
        for offset, data in parts.items():
            blob[offset:offset + len(data)] = data[: f["total"] - offset]
        return {**f, "data": bytes(blob), "offset": 0}

