"""Host side of the k210-deploy wire protocol (firmware/PROTOCOL.md) over any pyserial port.

`BoardLink(port)` talks to a runner (MaixPy/CanMV main.py, the C runner, or a virtual board) through
an object with pyserial's `read(n)`, `write(b)`, `timeout` and `in_waiting`: `serial.Serial`, or
`serial.serial_for_url("loop://" | "socket://host:port" | "/dev/pts/N")`.

The synchronous calls (`hello`, `model_info`, `load_model`, `infer`, `reboot`) send one frame at a
time and wait for its reply; a lost frame or reply is resent after a timeout scaled to the frame
size and baud rate (chunks carry their offset, so a retry resends one chunk). `send_request` and
`poll_replies` are the lower layer a pipelining harness uses to keep several INFERs in flight.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from k210.firmware import k210wire as w

from .errors import ToolFailure

log = logging.getLogger("k210.boardlink")

HOST_MAX_FRAME = 1 << 16  # largest frame the host accepts; boards announce max_frame <= this
DEFAULT_BAUD = 1_500_000  # assumed for links without a baud rate (loop://, socket://)


class BoardLinkError(ToolFailure):
    """The board did not answer as the protocol says."""


class BoardTimeout(BoardLinkError):
    """No reply after every retry."""


class BoardReset(BoardLinkError):
    """The board rebooted (an unsolicited HELLO with a new nonce): uploaded models are gone."""

    def __init__(self, hello: Hello):
        super().__init__(f"board reset (new boot nonce {hello.nonce:#010x}); its uploaded model is gone")
        self.hello = hello


class BoardError(BoardLinkError):
    """The board answered ERROR."""

    def __init__(self, code: int, detail: int, text: str, req: int = 0):
        name = w.ERROR_NAMES.get(code, str(code))
        super().__init__(f"board error {name}: {text}")
        self.code = code
        self.name = name
        self.detail = detail
        self.text = text
        self.req = req


@dataclass(frozen=True)
class TensorDesc:
    dtype: int
    shape: tuple[int, ...]

    @property
    def dtype_name(self) -> str:
        return w.DTYPE_NAMES.get(self.dtype, f"dtype{self.dtype}")

    @property
    def nbytes(self) -> int:
        return w.tensor_nbytes(self.dtype, self.shape)


@dataclass(frozen=True)
class Tensor:
    dtype: int
    shape: tuple[int, ...]
    data: bytes

    def to_numpy(self) -> Any:
        import numpy as np

        dtypes = {0: np.int8, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.uint8, 5: np.uint16, 6: np.uint32,
                  7: np.uint64, 8: np.float16, 9: np.float32, 10: np.float64}
        array = np.frombuffer(self.data, dtype=np.dtype(dtypes[self.dtype]).newbyteorder("<"))
        return array.reshape(self.shape) if self.shape else array


@dataclass(frozen=True)
class Hello:
    proto: int
    max_frame: int
    rx_window: int
    nonce: int
    max_model: int
    max_input: int
    rx_frames: int
    rx_dropped: int
    kmodel_versions: tuple[int, ...]
    firmware: str
    fw_version: str
    backend: str

    @property
    def chunk_size(self) -> int:
        """Largest data bytes per LOAD/INFER chunk that fit the board's frames."""
        return min(self.max_frame, HOST_MAX_FRAME) - w.CHUNK_OVERHEAD

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> Hello:
        return cls(f["proto"], f["max_frame"], f["rx_window"], f["nonce"], f["max_model"], f["max_input"],
                   f["rx_frames"], f["rx_dropped"], tuple(f["kmodel_versions"]), f["firmware"], f["fw_version"],
                   f["backend"])


@dataclass(frozen=True)
class ModelInfo:
    loaded: bool
    kmodel_version: int
    size: int
    sha256: str
    source: str
    inputs: tuple[TensorDesc, ...]
    outputs: tuple[TensorDesc, ...]

    @property
    def input_bytes(self) -> int:
        return sum(d.nbytes for d in self.inputs)

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> ModelInfo:
        return cls(bool(f["loaded"]), f["kmodel_version"], f["size"], f["sha256"], f["source"],
                   tuple(TensorDesc(d, tuple(s)) for d, s in f["inputs"]),
                   tuple(TensorDesc(d, tuple(s)) for d, s in f["outputs"]))


@dataclass(frozen=True)
class Message:
    type: int
    flags: int
    seq: int
    fields: dict[str, Any]

    @property
    def name(self) -> str:
        return w.TYPE_NAMES.get(self.type, f"0x{self.type:02x}")

    @property
    def is_event(self) -> bool:
        return bool(self.flags & w.FLAG_EVENT)


@dataclass
class LinkStats:
    frames_sent: int = 0
    retries: int = 0
    stale_replies: int = 0
    bad_messages: int = 0
    logs: list[tuple[int, str]] = field(default_factory=list)


class _ResultAssembler:
    """Collects the RESULT parts of one request (sent in order, possibly twice after a retry)."""

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.total = -1
        self.micros = 0
        self.n_outputs = 0
        self.req = 0

    def add(self, f: dict[str, Any]) -> bool:
        self.total, self.micros, self.n_outputs, self.req = f["total"], f["micros"], f["n_outputs"], f["req"]
        self.parts[f["offset"]] = f["data"]
        return self._covered() >= self.total

    def _covered(self) -> int:
        end = 0
        for offset in sorted(self.parts):
            if offset > end:
                break
            end = max(end, offset + len(self.parts[offset]))
        return end

    def blob(self) -> bytes:
        buf = bytearray(self.total)
        for offset, data in self.parts.items():
            buf[offset:offset + len(data)] = data[: self.total - offset]
        return bytes(buf)


def infer_chunk_payload(req: int, total: int, offset: int, data: bytes) -> bytes:
    return w.encode_payload(w.INFER_CHUNK, {"req": req, "total": total, "offset": offset, "data": data})


class BoardLink:
    """A synchronous protocol client. One BoardLink per port; not thread-safe."""

    def __init__(
        self,
        port: Any,
        *,
        reply_timeout: float = 0.5,
        retries: int = 4,
        infer_timeout: float = 10.0,
        commit_timeout: float = 60.0,
        poll_interval: float = 0.02,
        on_log: Callable[[int, str], None] | None = None,
    ):
        self.port = port
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.infer_timeout = infer_timeout
        self.commit_timeout = commit_timeout
        self.on_log = on_log
        self.stats = LinkStats()
        self.board: Hello | None = None
        self.nonce: int | None = None
        self._decoder = w.FrameDecoder(HOST_MAX_FRAME)
        self._inbox: list[Message] = []
        self._seq = 0
        self._req = 0
        if getattr(port, "timeout", None) != poll_interval:
            port.timeout = poll_interval

    @classmethod
    def open(cls, url: str, baud: int = DEFAULT_BAUD, **kwargs: Any) -> BoardLink:
        import serial

        return cls(serial.serial_for_url(url, baudrate=baud, timeout=kwargs.get("poll_interval", 0.02)), **kwargs)

    def close(self) -> None:
        self.port.close()

    # -- the protocol ---------------------------------------------------------------------------

    def hello(self) -> Hello:
        """Start a session: the board drops half-done transfers and says what it is."""
        msg = self._transact(w.HELLO_REQ, b"", expect=(w.HELLO,), events_reset=False)
        hello = Hello.from_fields(msg.fields)
        if hello.proto != w.PROTOCOL_VERSION:
            raise BoardLinkError(f"board speaks protocol {hello.proto}, host {w.PROTOCOL_VERSION}")
        self.board = hello
        self.nonce = hello.nonce
        return hello

    def model_info(self) -> ModelInfo:
        msg = self._transact(w.MODEL_INFO_REQ, b"", expect=(w.MODEL_INFO,))
        return ModelInfo.from_fields(msg.fields)

    def load_model(
        self,
        kmodel: bytes,
        inputs: Sequence[tuple[int, Sequence[int]]] = (),
        outputs: Sequence[tuple[int, Sequence[int]]] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> ModelInfo:
        """Upload a kmodel into the board's RAM/storage; returns the board's MODEL_INFO after it checked the hash."""
        board = self._board()
        sha = hashlib.sha256(kmodel).digest()
        begin = w.encode_payload(w.LOAD_BEGIN, {"size": len(kmodel), "sha256": sha.hex(),
                                                "inputs": [(d, tuple(s)) for d, s in inputs],
                                                "outputs": [(d, tuple(s)) for d, s in outputs]})
        self._transact(w.LOAD_BEGIN, begin, expect=(w.ACK,))
        offset = 0
        while offset < len(kmodel):
            data = kmodel[offset:offset + board.chunk_size]
            payload = w.encode_payload(w.LOAD_CHUNK, {"offset": offset, "data": data})
            try:
                ack = self._transact(w.LOAD_CHUNK, payload, expect=(w.ACK,))
            except BoardError as e:
                if e.code != w.E_GAP:
                    raise
                offset = e.detail  # the board lost track of a chunk: go back to where it is
                continue
            offset = ack.fields["next"]
            if progress:
                progress(offset, len(kmodel))
        msg = self._transact(w.LOAD_COMMIT, b"", expect=(w.MODEL_INFO,), work=(len(kmodel), self.commit_timeout))
        info = ModelInfo.from_fields(msg.fields)
        if info.sha256 != sha.hex() or info.size != len(kmodel):
            raise BoardLinkError(f"board reports model {info.sha256[:16]}… of {info.size} bytes after the upload")
        return info

    def infer(self, tensor: bytes, req: int | None = None) -> tuple[list[Tensor], int]:
        """Run one inference on the board: (output tensors, on-board inference time in microseconds)."""
        board = self._board()
        req = self._next_req() if req is None else req & 0xFFFF
        total = len(tensor)
        offset = 0
        restarts = 0
        while True:
            end = min(offset + board.chunk_size, total)
            payload = infer_chunk_payload(req, total, offset, tensor[offset:end])
            final = end == total
            try:
                msg = self._transact(w.INFER_CHUNK, payload, expect=(w.ACK, w.RESULT),
                                     work=(total, self.infer_timeout) if final else None, collect=final)
            except BoardError as e:
                if e.code == w.E_GAP:
                    offset = e.detail
                    continue
                if e.code == w.E_STALE and restarts < 3:
                    restarts += 1
                    offset = 0
                    continue
                raise
            if msg.type == w.ACK:
                offset = msg.fields["next"]
                continue
            return self._outputs(msg.fields), msg.fields["micros"]

    def reboot(self, boot_timeout: float = 20.0) -> Hello:
        """Ask the board to reset and wait for its boot HELLO (a new nonce)."""
        self._transact(w.REBOOT, b"", expect=(w.ACK,))
        deadline = time.monotonic() + boot_timeout
        while time.monotonic() < deadline:
            msg = self._next_message(deadline)
            if msg is not None and msg.is_event and msg.type == w.HELLO:
                hello = Hello.from_fields(msg.fields)
                self.board, self.nonce = hello, hello.nonce
                return hello
        raise BoardTimeout(f"no boot HELLO within {boot_timeout:.1f} s of REBOOT")

    # -- the lower layer (pipelining harnesses use these directly) --------------------------------

    def send_request(self, mtype: int, payload: bytes, seq: int | None = None) -> int:
        """Send one request frame; returns its seq (replies carry it)."""
        seq = self._next_seq() if seq is None else seq & 0xFFFF
        self.port.write(w.encode_frame(mtype, 0, seq, payload))
        self.stats.frames_sent += 1
        return seq

    def poll_replies(self, timeout: float = 0.0) -> list[Message]:
        """Messages that arrived within `timeout` seconds (at least one read is always done)."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._receive(deadline)
        out, self._inbox = self._inbox, []
        return out

    @property
    def frames_dropped(self) -> int:
        """Frames from the board that arrived damaged (bad CRC/COBS, too short, too long)."""
        return self._decoder.dropped()

    def wire_seconds(self, nbytes: int) -> float:
        baud = getattr(self.port, "baudrate", None) or DEFAULT_BAUD
        return nbytes * 10 / baud

    # -- internals ------------------------------------------------------------------------------

    def _board(self) -> Hello:
        return self.board if self.board is not None else self.hello()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def _next_req(self) -> int:
        self._req = (self._req + 1) & 0xFFFF
        return self._req

    def _receive(self, deadline: float) -> None:
        """Read until a message is waiting or the deadline passes (at least one read)."""
        while True:
            waiting = getattr(self.port, "in_waiting", 0)
            data = self.port.read(waiting or 1)
            if data:
                self._decoder.feed(data, self._on_frame)
            if self._inbox or time.monotonic() >= deadline:
                return

    def _next_message(self, deadline: float) -> Message | None:
        if not self._inbox:
            self._receive(deadline)
        return self._inbox.pop(0) if self._inbox else None

    def _on_frame(self, frame: memoryview) -> None:
        version, mtype, flags, seq = w.parse_header(frame)
        try:
            fields = w.decode_message(mtype, bytes(frame[w.HEADER_LEN:]))
        except w.ProtocolError as e:
            self.stats.bad_messages += 1
            log.warning("undecodable %s from the board: %s", w.TYPE_NAMES.get(mtype, hex(mtype)), e)
            return
        if version != w.PROTOCOL_VERSION:
            self.stats.bad_messages += 1
            return
        if mtype == w.LOG:
            self._log(fields["level"], fields["text"])
        self._inbox.append(Message(mtype, flags, seq, fields))

    def _log(self, level: int, text: str) -> None:
        self.stats.logs.append((level, text))
        if self.on_log:
            self.on_log(level, text)
        log.log({0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING}.get(level, logging.ERROR), "board: %s", text)

    def _reply_wait(self, request_bytes: int) -> float:
        reply_bytes = w.cobs_max_encoded(self.board.max_frame if self.board else 1024) + 1
        return self.reply_timeout + 2 * self.wire_seconds(request_bytes + reply_bytes)

    def _transact(
        self,
        mtype: int,
        payload: bytes,
        *,
        expect: tuple[int, ...],
        work: tuple[int, float] | None = None,
        collect: bool = False,
        events_reset: bool = True,
    ) -> Message:
        """Send one request and wait for its reply, resending it when none comes.

        work=(total, seconds): the request starts a long job (LOAD_COMMIT, a final INFER chunk). The
        board first answers ACK(next=total), "got it, working"; after that the host waits up to
        `seconds` for the real reply instead of resending at the short reply timeout.
        """
        seq = self._next_seq()
        frame = w.encode_frame(mtype, 0, seq, payload)
        wait = self._reply_wait(len(frame))
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                log.debug("no reply to %s seq %d, resending", w.TYPE_NAMES.get(mtype), seq)
            self.port.write(frame)
            self.stats.frames_sent += 1
            msg = self._await(seq, expect, wait, collect, events_reset, work)
            if msg is not None:
                return msg
        raise BoardTimeout(f"no reply to {w.TYPE_NAMES.get(mtype)} after {self.retries + 1} tries "
                           f"({wait:.2f} s each)")

    def _await(self, seq: int, expect: tuple[int, ...], wait: float, collect: bool,
               events_reset: bool, work: tuple[int, float] | None) -> Message | None:
        deadline = time.monotonic() + wait
        result = _ResultAssembler() if collect else None
        while True:
            msg = self._next_message(min(deadline, time.monotonic() + 0.05))
            if msg is None:
                if time.monotonic() >= deadline:
                    return None
                continue
            if msg.is_event:
                if msg.type == w.HELLO:
                    self._on_boot(Hello.from_fields(msg.fields), events_reset)
                continue
            if msg.seq != seq or not msg.flags & w.FLAG_REPLY:
                self.stats.stale_replies += 1
                continue
            if msg.type == w.ERROR:
                f = msg.fields
                raise BoardError(f["code"], f["detail"], f["text"], f["req"])
            if work and msg.type == w.ACK and msg.fields["next"] == work[0]:
                deadline = time.monotonic() + work[1] + wait  # the board is on it: wait for the job
                continue
            if msg.type not in expect:
                raise BoardLinkError(f"expected {'/'.join(w.TYPE_NAMES[t] for t in expect)}, got {msg.name}")
            if msg.type == w.RESULT and result is not None:
                deadline = time.monotonic() + wait  # a long result keeps the deadline moving
                if result.add(msg.fields):
                    return Message(w.RESULT, msg.flags, seq, {
                        "req": result.req, "micros": result.micros, "n_outputs": result.n_outputs,
                        "blob": result.blob()})
                continue
            return msg

    def _on_boot(self, hello: Hello, raise_reset: bool) -> None:
        if raise_reset and self.nonce is not None and hello.nonce != self.nonce:
            self.board, self.nonce = hello, hello.nonce
            raise BoardReset(hello)

    @staticmethod
    def _outputs(fields: dict[str, Any]) -> list[Tensor]:
        records = w.parse_result_blob(fields["blob"], fields["n_outputs"])
        return [Tensor(dtype, shape, data) for dtype, shape, data in records]
