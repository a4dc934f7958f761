"""One board over one port: handshake and diagnosis, model check and upload, then streaming.

BoardSession holds the session state (the board's HELLO, its model, the learnt reply time, the
figures) and the control requests; pipeline.py does the streaming, upload.py the model upload,
recovery.py says how resets and losses are handled.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from k210.core import firmwares
from k210.core.errors import BadInputError, ToolFailure
from k210.firmware import k210wire as w

from .channel import Channel
from .framesize import FrameSizer
from .hello_check import check_hello
from .linehealth import LineCount, damage_phrase
from .link import SessionStats
from .messages import HOST_MAX_FRAME, MAX_RX_WINDOW, BoardError, BoardTimeout, Hello, Message, ModelInfo
from .model import KModel, identify, wrong_model_message
from .pipeline import Pipeline, ResultSink, result_limit
from .ports import Port
from .recovery import BoardRestarted, Resync, UploadRestart
from .samples import ALL_MODES, SamplePlanner
from .schedlag import host_delay
from .timing import ReplyTimer
from .upload import MIN_UPLOAD_CHUNK, send_model

log = logging.getLogger("k210.hil")

REPLY_SLACK_S = 0.25  # control requests: host and OS latency on top of the line's own time
MAX_ATTEMPTS = 200  # per image; a link that loses 80 % of frames still gets through
MAX_UPLOAD_TRIES = 20  # uploads the board dropped for another reason than a reset
MAX_RESETS_IN_A_ROW = 500  # a board that resets this often while we recover is broken
MAX_RESETS_PER_UPLOAD = 12  # resets that each wiped a partly sent model, before we give up uploading
PATIENCE_S = 15.0  # how long a board may stay silent (a USB-serial hiccup, a MaixPy boot) before we give up
MAX_RESEND_INTERVAL_S = 1.0  # control requests are resent at most this far apart while we wait
REPL_MARKERS = (b">>>", b"MicroPython", b"MaixPy", b"Traceback")


class BoardSession:
    def __init__(self, port: Port, *, name: str = "", connect_timeout: float = 5.0,
                 max_attempts: int = MAX_ATTEMPTS, stop: threading.Event | None = None,
                 patience: float = PATIENCE_S) -> None:
        self.port = port
        self.name = name or port.url
        self.channel = Channel(port)
        self.connect_timeout = connect_timeout
        self.patience = patience
        self.reply_slack = REPLY_SLACK_S
        self.max_attempts = max_attempts
        self.stop = stop or threading.Event()
        self.stats = SessionStats()
        self.hello: Hello | None = None
        self.model: ModelInfo | None = None
        self.identified_by = ""
        self.may_upload = False
        self._kmodel: KModel | None = None
        self.timer = ReplyTimer()
        self.lag = host_delay()  # time this process was kept off the CPU: not counted against the line
        self._sizer: FrameSizer | None = None
        self._upload_sizer: FrameSizer | None = None
        self._req = 0
        self._live: tuple[float, int, int] | None = None
        self.sample_modes = ALL_MODES  # INFER modes the host may use where the board has them (samples.py)
        self.samples: SamplePlanner | None = None
        self.failure = ""  # why this board was given up while streaming ("" while it is fine)
        self.failed_after = 0  # images it had done by then

    @property
    def sizer(self) -> FrameSizer:
        """INFER chunk sizes from the error rate measured so far on this line (kept across streams)."""
        assert self.hello is not None
        if self._sizer is None or self._sizer.largest != self.hello.chunk_size:
            self._sizer = FrameSizer(self.hello.chunk_size)
        return self._sizer

    @property
    def upload_sizer(self) -> FrameSizer:
        """LOAD_CHUNK sizes, from the losses of earlier uploads on this line too."""
        assert self.hello is not None
        if self._upload_sizer is None or self._upload_sizer.largest != self.hello.chunk_size:
            self._upload_sizer = FrameSizer(self.hello.chunk_size, smallest=MIN_UPLOAD_CHUNK)
        return self._upload_sizer

    # -- timing ----------------------------------------------------------------------------------

    def _max_reply_bytes(self) -> int:
        # Never more than the host takes: a HELLO that claims 4 GiB frames must not stretch every wait to hours.
        return w.cobs_max_encoded(min(self.hello.max_frame, HOST_MAX_FRAME) if self.hello else 1024) + 1

    def _reply_wait(self, request_bytes: int) -> float:
        return self.reply_slack + 2 * self.port.wire_seconds(request_bytes + self._max_reply_bytes())

    def _probe_wait(self, queued_bytes: int) -> float:
        """A probe waits for everything queued before it, then for its own reply."""
        # The learnt reply time, not its backoff: a lossy line backs the timer off to seconds, and a probe
        # that waited that long would get two tries in --silence-timeout; a resent HELLO_REQ costs 16 bytes.
        rto = min(self.timer.rto, MAX_RESEND_INTERVAL_S)
        return rto + self.port.wire_seconds(queued_bytes + 16 + self._max_reply_bytes())

    def overdue(self, due: float, now: float, timer: ReplyTimer | None = None) -> bool:
        """No reply by now to what reached the board at `due`; `timer` (default: the line's) says how long
        the board may take. Time the host itself was not running since `due` does not count."""
        limit = due + (timer or self.timer).rto + self.port.wire_seconds(self._max_reply_bytes())
        return now > limit and now - self.lag.stalled(due) > limit

    # -- control requests ---------------------------------------------------------------------------

    def transact(self, mtype: int, payload: bytes, expect: tuple[int, ...], *, wait: float | None = None,
                  on_other: Callable[[Message], None] | None = None,
                  work: tuple[int, float] | None = None) -> Message:
        """Send one control request and wait for its reply, resending it when none comes in time.

        Patience is measured in time, not tries: a board that reboots or a line that hiccups is silent
        for seconds, so the request is resent, further and further apart (backoff), for up to
        `patience` seconds. work=(total, seconds): the request starts a long job (LOAD_COMMIT). A
        runner may first answer ACK(next=total), "got it, working"; for the next `seconds` the host
        then resends only now and then (a runner answers a repeated request once the job is done).
        """
        seq, frame = self.channel.frame(mtype, payload)
        wait = wait if wait is not None else self._reply_wait(len(frame))
        interval = wait
        started = time.monotonic()
        arrived = LineCount.of(self.channel)
        give_up = started + self.patience
        working_until = 0.0
        sends = 0
        while sends == 0 or time.monotonic() < max(give_up, working_until):
            if sends:
                self.stats.retries += 1
                interval = min(max(wait, MAX_RESEND_INTERVAL_S), interval * 2)
            self.channel.write(frame)
            sends += 1
            patient = max(1.0, 4 * self.timer.rto) + wait
            now = time.monotonic()
            deadline = now + (patient if now < working_until else interval)
            while (left := deadline - time.monotonic()) > 0 or (left := deadline + self.lag.stalled(now)
                                                                  - time.monotonic()) > 0:
                batch = self.channel.poll(min(0.05, left))
                for i, msg in enumerate(batch):
                    if msg.is_event:
                        try:
                            self.on_event(msg)
                        except BoardRestarted:  # it rebooted while we waited: the wait is over
                            self._note_wait(started, sends, mtype, arrived)
                            raise
                    elif msg.seq == seq:
                        if msg.type == w.ERROR:
                            f = msg.fields
                            raise BoardError(f["code"], f["detail"], f["text"], f["req"])
                        if msg.type in expect:
                            self._note_wait(started, sends, mtype, arrived)
                            self.channel.unread(batch[i + 1:])  # e.g. the next parts of a RESULT
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
        waited = time.monotonic() - started
        noisy = damage_phrase(LineCount.of(self.channel) - arrived, self.port.baud)
        raise BoardTimeout(f"{self.name}: no reply to {w.TYPE_NAMES[mtype]} for {waited:.1f} s ({sends} tries, "
                          f"the last {interval:.2f} s apart; patience {self.patience:g} s): "
                          + (f"the board is answering, but {noisy}" if noisy else "the board stopped answering"))

    def _note_wait(self, started: float, sends: int, mtype: int, arrived: LineCount | None = None) -> None:
        """A request that needed more than a couple of sends: the board was silent, or its answers damaged."""
        if sends <= 2:
            return
        waited = time.monotonic() - started
        s = self.stats
        s.waits += 1
        s.waited_s += waited
        s.longest_wait_s = max(s.longest_wait_s, waited)
        # A wait a user would notice is said on stderr (no logging set up: Python prints warnings as is).
        noisy = damage_phrase(LineCount.of(self.channel) - arrived, self.port.baud) if arrived else ""
        what = (f"no whole reply came for {waited:.1f} s: {noisy}" if noisy
                else f"the board was silent for {waited:.1f} s")
        log.log(logging.WARNING if waited >= 1.0 else logging.INFO, "%s: %s (%s sent %d times, patience %g s)",
                self.name, what, w.TYPE_NAMES[mtype], sends, self.patience)

    def on_event(self, msg: Message) -> None:
        if msg.type != w.HELLO:
            return
        hello = Hello.from_fields(msg.fields)
        if self.hello is not None and hello.nonce != self.hello.nonce:
            raise BoardRestarted(hello)

    # -- handshake --------------------------------------------------------------------------------

    def connect(self) -> Hello:
        """HELLO until the board answers, or a one-line diagnosis of what is on the port instead."""
        started = time.monotonic()
        deadline = started + self.connect_timeout
        interval = self._reply_wait(16)
        arrived = LineCount.of(self.channel)
        while time.monotonic() < deadline:
            if damage_phrase(LineCount.of(self.channel) - arrived, self.port.baud):
                # A board answering through a noisy line: keep asking for --silence-timeout, not just --connect-timeout.
                deadline = max(deadline, started + self.patience)
            seq, frame = self.channel.frame(w.HELLO_REQ, b"")
            self.channel.write(frame)
            until = min(deadline, time.monotonic() + interval)
            while (left := until - time.monotonic()) > 0:
                for msg in self.channel.poll(min(0.05, left)):
                    if msg.type == w.HELLO and msg.seq == seq and not msg.is_event:
                        return self._accept_hello(Hello.from_fields(msg.fields))
        raise ToolFailure(self._diagnose_silence(LineCount.of(self.channel) - arrived,
                                                 time.monotonic() - started))  # no answer: exit 3, not bad input

    def _accept_hello(self, hello: Hello) -> Hello:
        if hello.proto != w.PROTOCOL_VERSION:
            raise BadInputError(f"{self.name}: the board's runner speaks protocol v{hello.proto}, this host "
                                f"v{w.PROTOCOL_VERSION}: copy this version's firmware/ onto it")
        check_hello(hello, self.name)  # every field, before a frame is sized by it (exit 3 for one that cannot work)
        self.hello = hello
        return hello

    def _diagnose_silence(self, arrived: LineCount | None = None, seconds: float | None = None) -> str:
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
        noisy = damage_phrase(arrived, self.port.baud) if arrived and arrived.frames else ""
        if noisy:  # some frames whole, many damaged: a runner behind a bad line, not another firmware
            return (f"{self.name}: no HELLO within {seconds or self.connect_timeout:.1f} s: the board is answering, "
                    f"but {noisy}")
        if any(marker in c.sample for marker in REPL_MARKERS):
            return (f"{self.name} answers with a MicroPython prompt, not the k210-deploy runner ('{shown}'): "
                    "copy firmware/maixpy/*.py onto the board (k210 deploy) and reset it")
        return (f"{self.name} sends {c.bytes_seen} bytes that are not k210-deploy frames ('{shown}'): "
                f"another firmware, or the wrong baud rate (--baud {self.port.baud})")

    def model_info(self) -> ModelInfo:
        msg = self.transact(w.MODEL_INFO_REQ, b"", (w.MODEL_INFO,))
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
        self._check_input(kmodel)
        info = self.model_info()
        verdict = identify(info, kmodel)
        if verdict:
            self.identified_by = verdict
            return verdict
        self._check_version(kmodel)  # a firmware that cannot load it is the first thing to say
        if not upload:
            raise BadInputError(wrong_model_message(self.name, info, kmodel) + self._board_complaint())
        self.upload(kmodel)
        self.identified_by = "upload"
        return "upload"

    def _board_complaint(self) -> str:
        """The board's last error LOG (e.g. why its boot model did not load), as a sentence tail."""
        errors = [text for level, text in self.channel.logs if level >= w.LOG_ERROR]
        return f" (the board says: {errors[-1]})" if errors else ""

    def check_loadable(self, kmodel: KModel) -> None:
        """Refuse, before sending a byte, what the board says it cannot take."""
        self._check_version(kmodel)
        hello = self.hello
        assert hello is not None
        if hello.max_model == 0:
            raise BadInputError(f"{self.name}: the board's runner has no upload storage; flash the model instead "
                                "(k210 flash)")
        if len(kmodel.data) > hello.max_model:
            raise BadInputError(f"{self.name}: {kmodel.path} has {len(kmodel.data)} bytes, the board takes at "
                                f"most {hello.max_model}")

    def _check_input(self, kmodel: KModel) -> None:
        """An input bigger than the board's max_input (its firmware's limit, HELLO) is refused before a run."""
        hello = self.hello
        assert hello is not None
        if kmodel.input_bytes > hello.max_input:
            raise BadInputError(f"{self.name}: {kmodel.path} takes an input of {kmodel.input_bytes} bytes; the "
                                f"board's runner ({hello.firmware} {hello.fw_version}, {hello.backend}) takes at most "
                                f"{hello.max_input} ({registry_limits(kmodel.version)}; firmware/README.md: largest "
                                "input per firmware)")

    def _check_version(self, kmodel: KModel) -> None:
        hello = self.hello
        assert hello is not None
        if kmodel.version not in hello.kmodel_versions:
            loads = "/".join(f"v{v}" for v in hello.kmodel_versions) or "no kmodel version"
            builds = [f"{b.name}" for fw in firmwares.loaders(kmodel.version) for b in fw.builds
                      if kmodel.version in b.versions]
            hint = f" (kmodel v{kmodel.version} needs {' or '.join(builds)})" if builds else ""
            raise BadInputError(f"{self.name}: the board's firmware ({hello.firmware} {hello.fw_version}, "
                                f"{hello.backend}) loads {loads}; {kmodel.path} is kmodel v{kmodel.version}{hint}")

    def upload(self, kmodel: KModel, *, check: bool = True) -> ModelInfo:
        """Send the kmodel (windowed, acknowledged chunks) and have the board check its sha256."""
        if check:
            self.check_loadable(kmodel)
        failures = resets = 0
        while failures < MAX_UPLOAD_TRIES:
            if resets >= MAX_RESETS_PER_UPLOAD:
                # Each reset wipes what was sent: a board that resets faster than the upload takes
                # would have us resend it for ever.
                raise ToolFailure(
                    f"{self.name}: the board reset {resets} times while {kmodel.path} ({len(kmodel.data)} bytes) "
                    "was uploading; flash the model instead (k210 flash, or k210 board KMODEL) and run "
                    "without --upload")
            try:
                info = send_model(self, kmodel)
            except BoardRestarted as restart:  # a reset: begin again
                self._note_reset(restart.hello)
                resets += 1
                continue
            except UploadRestart:
                self.stats.retries += 1
                if self._despite_resets(self._reset_unannounced):
                    resets += 1
                else:
                    failures += 1  # the board dropped the upload without rebooting
                continue
            self.stats.uploads += 1
            self.model = info
            return info
        raise ToolFailure(f"{self.name}: the upload of {kmodel.path} did not complete in {MAX_UPLOAD_TRIES} tries")

    def _reset_unannounced(self) -> bool:
        """Probe with HELLO: True when the board has rebooted although its boot HELLO never arrived."""
        hello = Hello.from_fields(self.transact(w.HELLO_REQ, b"", (w.HELLO,)).fields)
        rebooted = self.hello is not None and hello.nonce != self.hello.nonce
        if rebooted:
            self.stats.resets += 1
            log.info("%s: board reset (found by a probe)", self.name)
        self._accept_hello(hello)
        return rebooted

    def upload_call(self, mtype: int, payload: bytes, expect: tuple[int, ...],
                     work: tuple[int, float] | None = None) -> Message:
        try:
            return self.transact(mtype, payload, expect, work=work)
        except BoardError as exc:
            if exc.code in (w.E_NOT_LOADING, w.E_HASH_MISMATCH, w.E_GAP):
                raise UploadRestart() from None
            raise self.upload_refused({"code": exc.code, "text": exc.text}, self._kmodel) from None

    def upload_refused(self, fields: dict, kmodel: KModel | None) -> Exception:
        name = w.ERROR_NAMES.get(fields["code"], str(fields["code"]))
        what = kmodel.path if kmodel else "the model"
        if fields["code"] == w.E_LOAD_FAILED:
            return ToolFailure(f"{self.name}: the board could not load {what}: {fields['text']}")
        return BadInputError(f"{self.name}: the board refused {what} ({name}): {fields['text']}")

    def window(self) -> int:
        """Bytes the host may have unanswered: the board's RX ring, less a little for duplicated bytes."""
        assert self.hello is not None
        ring = min(self.hello.rx_window, MAX_RX_WINDOW)
        return max(w.cobs_max_encoded(self.hello.frame_limit) + 1, ring - ring // 32)

    # -- recovery ---------------------------------------------------------------------------------

    def _note_reset(self, hello: Hello) -> None:
        """The board rebooted: count it and open a fresh session (it may reboot again meanwhile)."""
        for _ in range(MAX_RESETS_IN_A_ROW):
            self.stats.resets += 1
            log.info("%s: board reset (new nonce %#010x)", self.name, hello.nonce)
            self.hello = hello
            try:
                self._accept_hello(Hello.from_fields(self.transact(w.HELLO_REQ, b"", (w.HELLO,)).fields))
                return
            except BoardRestarted as again:
                hello = again.hello
        raise ToolFailure(f"{self.name}: the board keeps resetting")

    def _restore_model(self) -> None:
        """After a reset or a lost model: the same model again, from the board or by upload."""
        assert self._kmodel is not None
        info = self.model_info()
        if identify(info, self._kmodel):
            return
        if not self.may_upload:
            raise ToolFailure(f"{self.name}: the board reset and lost its model; rerun with --upload (and "
                              "--resume) so the harness can send it again")
        self.upload(self._kmodel, check=False)

    def _check_cache_claims(self) -> None:
        """Ask a board that offers a sample cache for a sample nobody ever sent it (a random SHA-256): an honest
        board answers NOT_CACHED; one that answers with a RESULT claims samples it never received, and
        every CACHED answer of it would be a guess. Such a board is refused (exit 3)."""
        body = w.encode_payload(w.INFER_CHUNK, {"req": self.next_req(), "total": w.SHA_LEN, "offset": 0,
                                                "mode": w.MODE_CACHED, "data": os.urandom(w.SHA_LEN)})
        try:
            self.transact(w.INFER_CHUNK, body, (w.RESULT,), work=(w.SHA_LEN, self.patience))
        except BoardError as exc:
            if exc.code == w.E_NOT_CACHED:
                return
            raise ToolFailure(f"{self.name}: the board offers a sample cache but answered a CACHED request with "
                              f"{exc.name} ({exc.text}); run with --no-cache") from None
        raise ToolFailure(f"{self.name}: the board answered a sample it was never sent (a random SHA-256, asked in "
                          "CACHED mode) with a RESULT: its sample cache cannot be trusted; run with --no-cache, "
                          "or fix its firmware")

    # -- streaming --------------------------------------------------------------------------------

    def stream(self, take: Callable[[], int | None], give_back: Callable[[list[int]], None],
               payload_of: Callable[[int], bytes], on_result: ResultSink) -> None:
        """Run images from `take()` until it returns None; report each through on_result(index, outputs, us)."""
        assert self.hello is not None and self._kmodel is not None
        started = time.monotonic()
        out0, in0 = self.port.bytes_out, self.port.bytes_in
        self._live = (started, out0, in0)
        if self.samples is None:
            self.samples = SamplePlanner(self.hello, payload_of, self.sample_modes)
            if self.samples.modes & w.MODE_CACHED:
                self._despite_resets(self._check_cache_claims)
        self.samples.payload_of = payload_of
        pipeline = Pipeline(self, take, payload_of, on_result, self.samples,
                            result_limit(self._kmodel.outputs if self._kmodel else ()))
        try:
            while not self.stop.is_set():
                try:
                    if not pipeline.step():
                        break
                    continue
                except BoardRestarted as restart:
                    reset: Hello | None = restart.hello
                except Resync:
                    reset = None
                self._recover(pipeline, reset)
        finally:
            give_back(pipeline.unfinished())
            self.stats.stream_seconds += time.monotonic() - started
            self.stats.bytes_to_board += self.port.bytes_out - out0
            self.stats.bytes_from_board += self.port.bytes_in - in0
            self._live = None

    def note_failure(self, exc: BaseException) -> None:
        """The board was given up: its fate goes into the figures (and so into the report)."""
        self.failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.failed_after = self.stats.images

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
            "wrong_req_results": s.wrong_req_results,
            "waits": s.waits, "waited_s": round(s.waited_s, 3), "longest_wait_s": round(s.longest_wait_s, 3),
            "chunk_bytes": self._sizer.chunk() if self._sizer else 0,  # INFER data bytes per frame, lately
            "reopens": self.port.reopens, "reopen_waited_s": round(self.port.reopen_waited_s, 3),
            "reopen_tries": self.port.reopen_tries,
            "host_delay_s": round(self.lag.total_s, 3),  # this process kept off the CPU (all its boards)
            "arrived": LineCount.of(self.channel).as_dict(),  # bytes and frames from the board, whole and damaged
            "fate": "failed" if self.failure else "finished", "error": self.failure,
            "failed_after_images": self.failed_after if self.failure else None,
            "identified_by": self.identified_by,
            "firmware": hello.firmware if hello else "", "fw_version": hello.fw_version if hello else "",
            "backend": hello.backend if hello else "", "rx_window": hello.rx_window if hello else 0,
            "window": self.window() if hello else 0,
            "caps": hello.caps if hello else 0,
            "samples": self.samples.figures.as_dict() if self.samples else {},
        }

    def _recover(self, pipeline: Pipeline, reset: Hello | None) -> None:
        """Resend what was in flight once the board is known to be in a fresh state with the model."""
        for _ in range(MAX_RESETS_IN_A_ROW):
            pipeline.abandon_all(line_fault=reset is None)
            try:
                if reset is not None:
                    self._note_reset(reset)
                else:
                    self.stats.resyncs += 1
                    msg = self.transact(w.HELLO_REQ, b"", (w.HELLO,), on_other=pipeline.late_message,
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


def registry_limits(version: int) -> str:
    """The largest input of each runner that loads kmodel `version`, as the registry has it (measured)."""
    builds = [b for fw in firmwares.loaders(version) for b in fw.builds if version in b.versions]
    each = ", ".join(f"{b.name} {b.max_input} B" + (f" ({b.input_rule})" if b.input_rule else "") for b in builds)
    return f"largest inputs for kmodel v{version}: {each or 'none'}"
