"""One board over one port: handshake, model check and upload, pipelined inference with recovery.

Pipelining. The runner serves frames strictly in order and holds what it has not read yet in its
UART RX ring (HELLO's rx_window); with no CTS, bytes beyond that are dropped. So the host keeps
requests in flight up to a window a little below rx_window, counting every byte it sent until the
frame is answered (ACK for a chunk, RESULT for the last one). The link then stays busy while the
board computes, and the ring can never overflow.

Recovery. Replies come in request order, so an answer to frame N means every unanswered frame sent
before N was lost (damaged on the way in, or its reply damaged on the way out): its image is sent
again as a new request (new req id and seq, so a late reply cannot be mistaken for it). An ERROR
does the same; a chunk that was lost makes the board answer the next ones with GAP/STALE. When
nothing comes back for longer than the line and the board could need (scaled to the bytes in
flight, the baud rate and the slowest inference seen), the host probes with HELLO_REQ, which also
resynchronises the board. A HELLO with a new boot nonce (announced, or found by the probe) means
the board reset: everything in flight is resent, after the model is checked and, if it is gone,
uploaded again. Every image gets a bounded number of attempts.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k210.firmware import k210wire as w
from k210.host.boardlink import BoardError, Hello, Message, ModelInfo, Tensor
from k210.host.errors import BadInputError, ToolFailure

from .channel import Channel
from .ports import Port
from .timing import ReplyTimer

log = logging.getLogger("k210.hil")

REPLY_SLACK_S = 0.25  # control requests: host and OS latency on top of the line's own time
MAX_ATTEMPTS = 200  # per image; a link that loses 80 % of frames still gets through
MAX_UPLOAD_TRIES = 20  # uploads the board dropped for another reason than a reset
MAX_RESETS_IN_A_ROW = 500  # a board that resets this often while we recover is broken
MIN_UPLOAD_CHUNK = 256
CONTROL_TRIES = 12
LOSS_GAIN = 0.03  # weight of one frame in the moving estimate of the frame loss rate
LOSSY = 0.02  # above this loss rate, requests go in small chunks (see _Pipeline._chunk_size)
FATAL_INFER_ERRORS = {w.E_INFER_FAILED, w.E_TOO_BIG, w.E_UNSUPPORTED, w.E_UNKNOWN_TYPE, w.E_BAD_VERSION}
REPL_MARKERS = (b">>>", b"MicroPython", b"MaixPy", b"Traceback")


class BoardRestarted(Exception):
    """The board sent a HELLO with a new boot nonce: it reset and forgot its session."""

    def __init__(self, hello: Hello) -> None:
        super().__init__(f"board reset (nonce {hello.nonce:#010x})")
        self.hello = hello


class _Resync(Exception):
    """Nothing useful came back in time, or the board lost its model: probe and recover."""


class _UploadRestart(Exception):
    """The board dropped the upload (it no longer knows it): begin again."""


@dataclass(frozen=True)
class KModel:
    """The kmodel under test, with what the protocol needs to know about it."""

    path: str
    data: bytes
    sha256: str
    version: int
    inputs: tuple[tuple[int, tuple[int, ...]], ...]
    outputs: tuple[tuple[int, tuple[int, ...]], ...]

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> KModel:
        from k210.converters.kmodel import parse_kmodel

        info = parse_kmodel(data)
        codes = {name: code for code, name in w.DTYPE_NAMES.items()}

        def descs(tensors) -> tuple[tuple[int, tuple[int, ...]], ...]:
            return tuple((codes[t.dtype], tuple(t.shape)) for t in tensors if t.dtype in codes and t.shape)

        return cls(path, data, hashlib.sha256(data).hexdigest(), info.version, descs(info.inputs),
                   descs(info.outputs))

    @property
    def input_bytes(self) -> int:
        return sum(w.tensor_nbytes(d, s) for d, s in self.inputs)


@dataclass
class SessionStats:
    retries: int = 0  # frames sent again: images, upload chunks, control requests
    resets: int = 0
    resyncs: int = 0
    uploads: int = 0
    stale_replies: int = 0
    max_in_flight: int = 0  # most frames unanswered at once while streaming
    images: int = 0
    stream_seconds: float = 0.0
    bytes_to_board: int = 0  # while streaming (uploads after resets included)
    bytes_from_board: int = 0


@dataclass
class _Attempt:
    index: int
    req: int
    payload: bytes
    chunk: int  # input bytes per frame
    sent_to: int = 0  # input bytes sent so far
    parts: dict[int, bytes] = field(default_factory=dict)
    dead: bool = False


@dataclass
class _Sent:
    nbytes: int
    attempt: _Attempt | None
    final: bool
    due: float  # when its last byte reached the board, or when the board said it is working on it
    timed: bool = False


ResultSink = Callable[[int, list[Tensor], int], None]


class BoardSession:
    def __init__(self, port: Port, *, name: str = "", connect_timeout: float = 5.0,
                 max_attempts: int = MAX_ATTEMPTS, stop: threading.Event | None = None) -> None:
        self.port = port
        self.name = name or port.url
        self.channel = Channel(port)
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.stop = stop or threading.Event()
        self.stats = SessionStats()
        self.hello: Hello | None = None
        self.model: ModelInfo | None = None
        self.identified_by = ""
        self.may_upload = False
        self._kmodel: KModel | None = None
        self.timer = ReplyTimer()
        self._upload_chunk = 0  # bytes per LOAD_CHUNK, smaller on a lossy line (0: the board's largest)
        self._req = 0
        self._live: tuple[float, int, int] | None = None

    # -- timing ----------------------------------------------------------------------------------

    def _max_reply_bytes(self) -> int:
        return w.cobs_max_encoded(self.hello.max_frame if self.hello else 1024) + 1

    def _reply_wait(self, request_bytes: int) -> float:
        return REPLY_SLACK_S + 2 * self.port.wire_seconds(request_bytes + self._max_reply_bytes())

    def _probe_wait(self, queued_bytes: int) -> float:
        """A probe waits for everything queued before it, then for its own reply."""
        return self.timer.rto + self.port.wire_seconds(queued_bytes + 16 + self._max_reply_bytes())

    def _overdue(self, due: float, now: float) -> bool:
        return now > due + self.timer.rto + self.port.wire_seconds(self._max_reply_bytes())

    # -- control requests ---------------------------------------------------------------------------

    def _transact(self, mtype: int, payload: bytes, expect: tuple[int, ...], *, wait: float | None = None,
                  tries: int = CONTROL_TRIES, on_other: Callable[[Message], None] | None = None,
                  work: tuple[int, float] | None = None) -> Message:
        """Send one control request and wait for its reply, resending it when none comes in time.

        work=(total, seconds): the request starts a long job (LOAD_COMMIT). A runner may first answer
        ACK(next=total), "got it, working"; for the next `seconds` the host then resends only now and
        then (a runner answers a repeated request once the job is done, so a lost reply costs little).
        """
        seq, frame = self.channel.frame(mtype, payload)
        wait = wait if wait is not None else self._reply_wait(len(frame))
        working_until = 0.0
        attempt = 0
        while attempt < tries or time.monotonic() < working_until:
            if attempt:
                self.stats.retries += 1
            self.channel.write(frame)
            attempt += 1
            patient = max(1.0, 4 * self.timer.rto) + wait
            deadline = time.monotonic() + (patient if time.monotonic() < working_until else wait)
            while (left := deadline - time.monotonic()) > 0:
                for msg in self.channel.poll(min(0.05, left)):
                    if msg.is_event:
                        self._on_event(msg)
                    elif msg.seq == seq:
                        if msg.type == w.ERROR:
                            f = msg.fields
                            raise BoardError(f["code"], f["detail"], f["text"], f["req"])
                        if msg.type in expect:
                            return msg
                        if work and msg.type == w.ACK and msg.fields["next"] == work[0]:
                            working_until = time.monotonic() + work[1]
                            deadline = time.monotonic() + patient
                            continue
                        raise ToolFailure(f"{self.name}: expected {'/'.join(w.TYPE_NAMES[t] for t in expect)} "
                                          f"from the board, got {msg.name}")
                    elif on_other is not None:
                        on_other(msg)
                    else:
                        self.stats.stale_replies += 1
        raise ToolFailure(f"{self.name}: no reply to {w.TYPE_NAMES[mtype]} after {tries} tries "
                          f"({wait:.2f} s each): the board stopped answering")

    def _on_event(self, msg: Message) -> None:
        if msg.type != w.HELLO:
            return
        hello = Hello.from_fields(msg.fields)
        if self.hello is not None and hello.nonce != self.hello.nonce:
            raise BoardRestarted(hello)

    # -- handshake --------------------------------------------------------------------------------

    def connect(self) -> Hello:
        """HELLO until the board answers, or a one-line diagnosis of what is on the port instead."""
        deadline = time.monotonic() + self.connect_timeout
        interval = self._reply_wait(16)
        while time.monotonic() < deadline:
            seq, frame = self.channel.frame(w.HELLO_REQ, b"")
            self.channel.write(frame)
            until = min(deadline, time.monotonic() + interval)
            while (left := until - time.monotonic()) > 0:
                for msg in self.channel.poll(min(0.05, left)):
                    if msg.type == w.HELLO and msg.seq == seq and not msg.is_event:
                        return self._accept_hello(Hello.from_fields(msg.fields))
        raise BadInputError(self._diagnose_silence())

    def _accept_hello(self, hello: Hello) -> Hello:
        if hello.proto != w.PROTOCOL_VERSION:
            raise BadInputError(f"{self.name}: the board's runner speaks protocol v{hello.proto}, this host "
                                f"v{w.PROTOCOL_VERSION}: copy this version's firmware/ onto it")
        self.hello = hello
        return hello

    def _diagnose_silence(self) -> str:
        c = self.channel
        waited = f"{self.connect_timeout:g} s"
        if c.other_versions:
            versions = ", ".join(f"v{v}" for v in sorted(c.other_versions))
            return (f"{self.name}: the board speaks k210-deploy protocol {versions}, this host "
                    f"v{w.PROTOCOL_VERSION}: copy this version's firmware/ onto it")
        if c.echoes:
            return f"{self.name} sends back what the host writes: a loopback, not a board"
        if not c.bytes_seen:
            return (f"no answer from {self.name} within {waited}: is a board there, is the k210-deploy runner "
                    f"started on it, and is the baud rate right (--baud {self.port.baud})?")
        text = bytes(c.sample).decode("ascii", "replace")
        shown = " ".join(text.split())[:60]
        if any(marker in c.sample for marker in REPL_MARKERS):
            return (f"{self.name} answers with a MicroPython prompt, not the k210-deploy runner ('{shown}'): "
                    "copy firmware/maixpy/*.py onto the board (k210 deploy) and reset it")
        return (f"{self.name} sends {c.bytes_seen} bytes that are not k210-deploy frames ('{shown}'): "
                f"another firmware, or the wrong baud rate (--baud {self.port.baud})")

    def model_info(self) -> ModelInfo:
        msg = self._transact(w.MODEL_INFO_REQ, b"", (w.MODEL_INFO,))
        self.model = ModelInfo.from_fields(msg.fields)
        return self.model

    # -- the model on the board --------------------------------------------------------------------

    def ensure_model(self, kmodel: KModel, upload: bool) -> str:
        """Make sure the board runs `kmodel`; returns how that was established."""
        self._kmodel = kmodel
        self.may_upload = upload
        return self._despite_resets(lambda: self._ensure_model(kmodel, upload))

    def _despite_resets(self, action: Callable[[], Any]) -> Any:
        """Run `action`, starting it over whenever the board resets meanwhile."""
        for _ in range(MAX_RESETS_IN_A_ROW):
            try:
                return action()
            except BoardRestarted as restart:
                self._note_reset(restart.hello)
        raise ToolFailure(f"{self.name}: the board keeps resetting")

    def _ensure_model(self, kmodel: KModel, upload: bool) -> str:
        info = self.model_info()
        verdict = self._identify(info, kmodel)
        if verdict:
            self.identified_by = verdict
            return verdict
        if not upload:
            raise BadInputError(self._wrong_model_message(info, kmodel))
        self.upload(kmodel)
        self.identified_by = "upload"
        return "upload"

    @staticmethod
    def _identify(info: ModelInfo, kmodel: KModel) -> str:
        if not info.loaded:
            return ""
        if info.sha256 == kmodel.sha256:
            return "sha256"
        if info.sha256 != "0" * 64:  # the board knows its model's hash, and it is another one
            return ""
        board_inputs = tuple((d.dtype, tuple(d.shape)) for d in info.inputs)
        board_shapes = tuple(tuple(d.shape) for d in info.outputs)
        if board_inputs and board_inputs == kmodel.inputs and board_shapes == tuple(
                s for _, s in kmodel.outputs[: len(board_shapes)]):
            return "shapes"  # a flashed model: no hash on the board, but the tensors match
        return ""

    def _wrong_model_message(self, info: ModelInfo, kmodel: KModel) -> str:
        if not info.loaded:
            return f"{self.name}: the board has no model loaded; pass --upload to send {kmodel.path}"
        if info.sha256 == "0" * 64 and not info.inputs:
            return (f"{self.name}: the board's model ({info.source}) has no hash or shapes to check against "
                    f"{kmodel.path}; pass --upload to send it")

        def shapes(descs) -> str:
            return ", ".join(f"{w.DTYPE_NAMES.get(d, d)}{list(s)}" for d, s in descs) or "?"

        board = f"sha256 {info.sha256[:12]}…" if info.sha256 != "0" * 64 else \
            f"inputs {shapes((d.dtype, d.shape) for d in info.inputs)}"
        ours = f"sha256 {kmodel.sha256[:12]}…" if info.sha256 != "0" * 64 else f"inputs {shapes(kmodel.inputs)}"
        return (f"{self.name}: the board runs another model ({board}, {info.size} bytes, from {info.source}); "
                f"{kmodel.path} has {ours}. Pass --upload to send it")

    def check_loadable(self, kmodel: KModel) -> None:
        hello = self.hello
        assert hello is not None
        if kmodel.version not in hello.kmodel_versions:
            loads = "/".join(f"v{v}" for v in hello.kmodel_versions) or "no kmodel version"
            hint = " (kmodel v5 needs CanMV with the nncase-1.x KPU, or the C runner)" if kmodel.version == 5 else ""
            raise BadInputError(f"{self.name}: the board's firmware ({hello.firmware} {hello.fw_version}, "
                                f"{hello.backend}) loads {loads}; {kmodel.path} is kmodel v{kmodel.version}{hint}")
        if hello.max_model == 0:
            raise BadInputError(f"{self.name}: the board's runner has no upload storage; flash the model instead "
                                "(k210 flash)")
        if len(kmodel.data) > hello.max_model:
            raise BadInputError(f"{self.name}: {kmodel.path} has {len(kmodel.data)} bytes, the board takes at "
                                f"most {hello.max_model}")

    def upload(self, kmodel: KModel, *, check: bool = True) -> ModelInfo:
        """Send the kmodel (windowed, acknowledged chunks) and have the board check its sha256."""
        if check:
            self.check_loadable(kmodel)
        failures = 0
        for _ in range(MAX_RESETS_IN_A_ROW):
            try:
                info = self._despite_resets(lambda: self._upload_once(kmodel))  # a reset: begin again
            except _UploadRestart:
                self.stats.retries += 1
                if not self._despite_resets(self._reset_unannounced):
                    failures += 1  # the board dropped the upload without rebooting
                if failures >= MAX_UPLOAD_TRIES:
                    break
                continue
            self.stats.uploads += 1
            self.model = info
            return info
        raise ToolFailure(f"{self.name}: the upload of {kmodel.path} did not complete in {MAX_UPLOAD_TRIES} tries")

    def _reset_unannounced(self) -> bool:
        """Probe with HELLO: True when the board has rebooted although its boot HELLO never arrived."""
        hello = Hello.from_fields(self._transact(w.HELLO_REQ, b"", (w.HELLO,)).fields)
        rebooted = self.hello is not None and hello.nonce != self.hello.nonce
        if rebooted:
            self.stats.resets += 1
            log.info("%s: board reset (found by a probe)", self.name)
        self._accept_hello(hello)
        return rebooted

    def _upload_once(self, kmodel: KModel) -> ModelInfo:
        hello = self.hello
        assert hello is not None
        data = kmodel.data
        begin = w.encode_payload(w.LOAD_BEGIN, {"size": len(data), "sha256": kmodel.sha256,
                                                "inputs": list(kmodel.inputs), "outputs": list(kmodel.outputs)})
        self._upload_call(w.LOAD_BEGIN, begin, (w.ACK,))
        full = hello.chunk_size
        chunk = self._upload_chunk = min(full, self._upload_chunk or full)
        clean_acks = 0
        # Go-back-N wastes what is in flight behind a lost chunk, so on a lossy line the window shrinks
        # (halved on each loss, one chunk more per window of ACKs), as TCP's congestion window does.
        window = self._window()
        cwnd = float(window)
        acked = 0
        next_offset = 0
        # seq -> (end, bytes, generation, due)
        in_flight: OrderedDict[int, tuple[int, int, int, float]] = OrderedDict()
        in_flight_bytes = 0
        generation = 0  # bumped on every rewind: replies to older chunks no longer steer
        while acked < len(data):
            while next_offset < len(data):
                end = min(next_offset + chunk, len(data))
                payload = w.encode_payload(w.LOAD_CHUNK, {"offset": next_offset, "data": data[next_offset:end]})
                seq, frame = self.channel.frame(w.LOAD_CHUNK, payload)
                if in_flight and in_flight_bytes + len(frame) > min(window, cwnd):
                    break
                due = self.channel.write(frame)
                in_flight[seq] = (end, len(frame), generation, due)
                in_flight_bytes += len(frame)
                next_offset = end
            for msg in self.channel.poll(0.02):
                if msg.is_event:
                    self._on_event(msg)
                    continue
                entry = in_flight.get(msg.seq)
                if entry is None:
                    self.stats.stale_replies += 1
                    continue
                for seq in list(in_flight):  # this one, and every older one: gone from the board's ring
                    in_flight_bytes -= in_flight.pop(seq)[1]
                    if seq == msg.seq:
                        break
                self.timer.sample(time.monotonic() - entry[3])
                if msg.type == w.ACK:
                    acked = max(acked, msg.fields["next"])
                    cwnd = min(window, cwnd + entry[1] * entry[1] / cwnd)
                    clean_acks += 1
                    if clean_acks >= 16 and chunk < full:  # the line got better: bigger chunks again
                        chunk = self._upload_chunk = min(full, chunk * 2)
                        clean_acks = 0
                elif msg.type == w.ERROR:
                    code, detail = msg.fields["code"], msg.fields["detail"]
                    if code == w.E_GAP:
                        if entry[2] == generation:  # the board is missing bytes from `detail` on
                            self.stats.retries += max(0, next_offset - detail) // chunk + 1
                            acked = max(acked, min(detail, next_offset))
                            next_offset = detail
                            generation += 1
                            chunk = self._upload_chunk = max(MIN_UPLOAD_CHUNK, chunk // 2)  # lossy: smaller
                            cwnd = max(float(entry[1]), cwnd / 2)
                            clean_acks = 0
                    elif code == w.E_NOT_LOADING:
                        raise _UploadRestart()
                    else:
                        raise self._upload_refused(msg.fields, kmodel)
            if in_flight and self._overdue(next(iter(in_flight.values()))[3], time.monotonic()):
                self.timer.timed_out()
                self.stats.retries += len(in_flight)
                in_flight.clear()
                in_flight_bytes = 0
                next_offset = acked
                generation += 1
                chunk = self._upload_chunk = max(MIN_UPLOAD_CHUNK, chunk // 2)
                cwnd = max(float(MIN_UPLOAD_CHUNK), cwnd / 2)
                clean_acks = 0
        # The board hashes and loads the model now: long, on a real K210 with a big model.
        msg = self._upload_call(w.LOAD_COMMIT, b"", (w.MODEL_INFO,), work=(len(data), 30.0 + len(data) / 1e5))
        info = ModelInfo.from_fields(msg.fields)
        if info.sha256 != kmodel.sha256 or info.size != len(data):
            raise ToolFailure(f"{self.name}: after the upload the board reports model {info.sha256[:12]}… of "
                              f"{info.size} bytes, not {kmodel.sha256[:12]}…")
        return info

    def _upload_call(self, mtype: int, payload: bytes, expect: tuple[int, ...],
                     work: tuple[int, float] | None = None) -> Message:
        try:
            return self._transact(mtype, payload, expect, work=work)
        except BoardError as exc:
            if exc.code in (w.E_NOT_LOADING, w.E_HASH_MISMATCH, w.E_GAP):
                raise _UploadRestart() from None
            raise self._upload_refused({"code": exc.code, "text": exc.text}, self._kmodel) from None

    def _upload_refused(self, fields: dict, kmodel: KModel | None) -> Exception:
        name = w.ERROR_NAMES.get(fields["code"], str(fields["code"]))
        what = kmodel.path if kmodel else "the model"
        if fields["code"] == w.E_LOAD_FAILED:
            return ToolFailure(f"{self.name}: the board could not load {what}: {fields['text']}")
        return BadInputError(f"{self.name}: the board refused {what} ({name}): {fields['text']}")

    def _window(self) -> int:
        """Bytes the host may have unanswered: the board's RX ring, less a little for duplicated bytes."""
        assert self.hello is not None
        return max(self.hello.max_frame, self.hello.rx_window - self.hello.rx_window // 32)

    # -- recovery ---------------------------------------------------------------------------------

    def _note_reset(self, hello: Hello) -> None:
        """The board rebooted: count it and open a fresh session (it may reboot again meanwhile)."""
        for _ in range(MAX_RESETS_IN_A_ROW):
            self.stats.resets += 1
            log.info("%s: board reset (new nonce %#010x)", self.name, hello.nonce)
            self.hello = hello
            try:
                self._accept_hello(Hello.from_fields(self._transact(w.HELLO_REQ, b"", (w.HELLO,)).fields))
                return
            except BoardRestarted as again:
                hello = again.hello
        raise ToolFailure(f"{self.name}: the board keeps resetting")

    def _restore_model(self) -> None:
        """After a reset or a lost model: the same model again, from the board or by upload."""
        assert self._kmodel is not None
        info = self.model_info()
        if self._identify(info, self._kmodel):
            return
        if not self.may_upload:
            raise ToolFailure(f"{self.name}: the board reset and lost its model; rerun with --upload (and "
                              "--resume) so the harness can send it again")
        self.upload(self._kmodel, check=False)

    # -- streaming --------------------------------------------------------------------------------

    def stream(self, take: Callable[[], int | None], give_back: Callable[[list[int]], None],
               payload_of: Callable[[int], bytes], on_result: ResultSink) -> None:
        """Run images from `take()` until it returns None; report each through on_result(index, outputs, us)."""
        assert self.hello is not None and self._kmodel is not None
        started = time.monotonic()
        out0, in0 = self.port.bytes_out, self.port.bytes_in
        self._live = (started, out0, in0)
        pipeline = _Pipeline(self, take, payload_of, on_result)
        try:
            while not self.stop.is_set():
                try:
                    if not pipeline.step():
                        break
                    continue
                except BoardRestarted as restart:
                    reset: Hello | None = restart.hello
                except _Resync:
                    reset = None
                self._recover(pipeline, reset)
        finally:
            give_back(pipeline.unfinished())
            self.stats.stream_seconds += time.monotonic() - started
            self.stats.bytes_to_board += self.port.bytes_out - out0
            self.stats.bytes_from_board += self.port.bytes_in - in0
            self._live = None

    def figures(self) -> dict:
        """This board's streaming figures so far (also while it streams), for the journal and report."""
        s = self.stats
        seconds, to_board, from_board = s.stream_seconds, s.bytes_to_board, s.bytes_from_board
        if self._live is not None:
            started, out0, in0 = self._live
            seconds += time.monotonic() - started
            to_board += self.port.bytes_out - out0
            from_board += self.port.bytes_in - in0
        hello = self.hello
        return {
            "port": self.name, "baud": self.port.baud, "seconds": seconds, "bytes_to_board": to_board,
            "bytes_from_board": from_board, "images": s.images, "retries": s.retries, "resets": s.resets,
            "resyncs": s.resyncs, "uploads": s.uploads, "max_in_flight": s.max_in_flight,
            "identified_by": self.identified_by,
            "firmware": hello.firmware if hello else "", "fw_version": hello.fw_version if hello else "",
            "backend": hello.backend if hello else "", "rx_window": hello.rx_window if hello else 0,
            "window": self._window() if hello else 0,
        }

    def _recover(self, pipeline: _Pipeline, reset: Hello | None) -> None:
        """Resend what was in flight once the board is known to be in a fresh state with the model."""
        for _ in range(MAX_RESETS_IN_A_ROW):
            pipeline.abandon_all()
            try:
                if reset is not None:
                    self._note_reset(reset)
                else:
                    self.stats.resyncs += 1
                    msg = self._transact(w.HELLO_REQ, b"", (w.HELLO,), on_other=pipeline.late_message,
                                         wait=self._probe_wait(pipeline.in_flight_bytes))
                    hello = Hello.from_fields(msg.fields)
                    if self.hello is not None and hello.nonce != self.hello.nonce:
                        self.stats.resets += 1
                        log.info("%s: board reset (found by a probe)", self.name)
                    self._accept_hello(hello)
                # The board has answered a request sent after everything in flight: its ring is empty.
                pipeline.forget_in_flight()
                self._restore_model()
                return
            except BoardRestarted as again:
                reset = again.hello
        raise ToolFailure(f"{self.name}: the board keeps resetting")

    def next_req(self) -> int:
        self._req = (self._req + 1) & 0xFFFF
        return self._req



class _Pipeline:
    """The in-flight bookkeeping of BoardSession.stream (one board, one thread)."""

    def __init__(self, session: BoardSession, take: Callable[[], int | None], payload_of: Callable[[int], bytes],
                 on_result: ResultSink) -> None:
        self.s = session
        self.take = take
        self.payload_of = payload_of
        self.on_result = on_result
        self.in_flight: OrderedDict[int, _Sent] = OrderedDict()  # seq -> frame, in send order
        self.in_flight_bytes = 0
        self.retry: deque[int] = deque()
        self.attempts: dict[int, int] = {}
        self.done: set[int] = set()
        self.current: _Attempt | None = None
        self.held: tuple[int, bytes, bool] | None = None  # a built frame waiting for window room
        self.exhausted = False
        self.window = session._window()
        self.loss = 0.0  # moving estimate of the fraction of frames lost

    def _chunk_size(self) -> int:
        """Full frames on a clean line. On a lossy one, small chunks: more of them fit the window, so a
        stretch of bad luck rarely loses every frame in flight (which costs a timeout to notice), and the
        next chunk's GAP/STALE reply tells at once that one went missing."""
        full = self.s.hello.chunk_size
        return full if self.loss < LOSSY else max(64, min(full, self.window // 16))

    def _note_frame(self, lost: bool) -> None:
        self.loss = (1 - LOSS_GAIN) * self.loss + (LOSS_GAIN if lost else 0.0)

    # -- one turn of the loop -------------------------------------------------------------------------

    def step(self) -> bool:
        """Send what the window allows, then handle what came back. False when all is done."""
        self._fill()
        if not self.in_flight and self.current is None and not self.retry and self.exhausted:
            return False
        wait = 0.02 if self.in_flight else 0.0
        for msg in self.s.channel.poll(wait):
            self._handle(msg)
        if self.in_flight and self.s._overdue(next(iter(self.in_flight.values())).due, time.monotonic()):
            self.s.timer.timed_out()
            raise _Resync()
        return True

    def _next_index(self) -> int | None:
        while self.retry:
            index = self.retry.popleft()
            if index not in self.done:
                return index
        if self.exhausted:
            return None
        index = self.take()
        if index is None:
            self.exhausted = True
        return index

    def _fill(self) -> None:
        s = self.s
        while True:
            if self.held is None:
                if self.current is None or self.current.dead:
                    index = self._next_index()
                    if index is None:
                        self.current = None
                        return
                    self.current = _Attempt(index, s.next_req(), self.payload_of(index), self._chunk_size())
                    self.attempts[index] = self.attempts.get(index, 0) + 1
                a = self.current
                end = min(a.sent_to + a.chunk, len(a.payload))
                body = w.encode_payload(w.INFER_CHUNK, {"req": a.req, "total": len(a.payload), "offset": a.sent_to,
                                                        "data": a.payload[a.sent_to:end]})
                seq, frame = s.channel.frame(w.INFER_CHUNK, body)
                self.held = (seq, frame, end == len(a.payload))
                a.sent_to = end
            seq, frame, final = self.held
            if self.current is not None and self.current.dead:  # its request failed meanwhile
                self.held = None
                continue
            if self.in_flight and self.in_flight_bytes + len(frame) > self.window:
                return
            due = s.channel.write(frame)
            self.in_flight[seq] = _Sent(len(frame), self.current, final, due)
            self.in_flight_bytes += len(frame)
            s.stats.max_in_flight = max(s.stats.max_in_flight, len(self.in_flight))
            self.held = None
            if final:
                self.current = None

    # -- replies ------------------------------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        if msg.is_event:
            self.s._on_event(msg)
            return
        sent = self.in_flight.get(msg.seq)
        if sent is None:
            self.s.stats.stale_replies += 1
            return
        for seq in list(self.in_flight):  # replies come in order: older unanswered frames are lost
            if seq == msg.seq:
                break
            self._forget(seq, lost=True)
        now = time.monotonic()
        if not sent.timed:
            self.s.timer.sample(now - sent.due)
            sent.timed = True
            self._note_frame(lost=False)
        if msg.type == w.ACK:
            if sent.final and sent.attempt is not None and msg.fields["next"] == len(sent.attempt.payload):
                # "Got it all, running": the frame has left the board's ring; its RESULT follows.
                self.in_flight_bytes -= sent.nbytes
                sent.nbytes = 0
                sent.due = now
                sent.timed = False
            else:
                self._forget(msg.seq)
        elif msg.type == w.RESULT:
            self._on_result_part(msg, sent)
        elif msg.type == w.ERROR:
            self._forget(msg.seq)
            self._on_error(msg.fields, sent)
        else:
            self._forget(msg.seq)

    def _on_result_part(self, msg: Message, sent: _Sent) -> None:
        f = msg.fields
        a = sent.attempt
        if a is None:
            self._forget(msg.seq)
            return
        a.parts[f["offset"]] = f["data"]
        if _covered(a.parts) < f["total"]:
            sent.due = time.monotonic()
            return  # more parts of this RESULT to come, with the same seq
        self._forget(msg.seq)
        blob = bytearray(f["total"])
        for offset, data in a.parts.items():
            blob[offset:offset + len(data)] = data[: f["total"] - offset]
        try:
            records = w.parse_result_blob(bytes(blob), f["n_outputs"])
        except w.ProtocolError:
            self._kill(a)
            return
        if a.index in self.done:
            return
        a.dead = True  # finished: nothing more to do for it
        self.done.add(a.index)
        self.s.stats.images += 1
        self.on_result(a.index, [Tensor(d, s, data) for d, s, data in records], f["micros"])

    def _on_error(self, fields: dict, sent: _Sent) -> None:
        code = fields["code"]
        if code == w.E_NO_MODEL:
            raise _Resync()
        if code in FATAL_INFER_ERRORS:
            index = sent.attempt.index if sent.attempt else -1
            raise ToolFailure(f"{self.s.name}: the board failed on image {index} "
                              f"({w.ERROR_NAMES.get(code, code)}): {fields['text']}")
        if sent.attempt is not None:
            self._kill(sent.attempt, fields["text"])

    def _forget(self, seq: int, lost: bool = False) -> None:
        sent = self.in_flight.pop(seq)
        self.in_flight_bytes -= sent.nbytes
        if lost and not sent.timed:
            self._note_frame(lost=True)
        if lost and sent.final and sent.attempt is not None:
            self._kill(sent.attempt, "request or result lost on the line")

    def _kill(self, a: _Attempt, why: str = "") -> None:
        if a.dead:
            return
        a.dead = True
        if a.index in self.done:
            return
        tries = self.attempts.get(a.index, 0)
        if tries >= self.s.max_attempts:
            raise ToolFailure(f"{self.s.name}: image {a.index} failed {tries} times ({why or 'no reply'})")
        self.s.stats.retries += 1
        self.retry.appendleft(a.index)

    # -- recovery support -----------------------------------------------------------------------------

    def abandon_all(self) -> None:
        """Every request in flight is given up (resent later); their frames stay counted until forgotten."""
        for sent in self.in_flight.values():
            if not sent.timed:
                self._note_frame(lost=True)
            if sent.attempt is not None:
                self._kill(sent.attempt, "board reset or stopped answering")
        if self.current is not None:
            self._kill(self.current, "board reset or stopped answering")
            self.current = None
        self.held = None

    def late_message(self, msg: Message) -> None:
        """A reply that arrives during recovery: a complete late RESULT still counts."""
        if msg.is_event:
            return
        sent = self.in_flight.get(msg.seq)
        if sent is not None and msg.type == w.RESULT and sent.attempt is not None:
            a = sent.attempt
            a.dead = False  # it was abandoned, but here is its answer
            self._on_result_part(msg, sent)
            a.dead = True

    def forget_in_flight(self) -> None:
        """The board answered a later request: nothing sent before it is still in its ring."""
        self.in_flight.clear()
        self.in_flight_bytes = 0

    def unfinished(self) -> list[int]:
        pending = [i for i in self.retry if i not in self.done]
        for sent in self.in_flight.values():
            if sent.attempt is not None and sent.attempt.index not in self.done:
                pending.append(sent.attempt.index)
        if self.current is not None and self.current.index not in self.done:
            pending.append(self.current.index)
        return sorted(set(pending))


def _covered(parts: dict[int, bytes]) -> int:
    end = 0
    for offset in sorted(parts):
        if offset > end:
            break
        end = max(end, offset + len(parts[offset]))
    return end
