"""Pipelined inference on one board: requests in flight up to the board's RX ring, losses found by order.

The runner serves frames strictly in order and holds what it has not read yet in its UART RX ring
(HELLO's rx_window); with no CTS, bytes beyond that are dropped. So the host keeps requests in
flight up to a window a little below rx_window, counting every byte it sent until the frame is
answered (ACK for a chunk, or the ACK "got it all, running" / RESULT for the last one). The link
then stays busy while the board computes, and the ring can never overflow. Losses and resets are
handled as recovery.py says.

On a lossy line (framesize.py measures it) requests go one at a time ("solo"): the board keeps what
it has of its current request until another one starts, so as long as none starts, a lost chunk
costs only a resend from where the board says it is (GAP detail, STALE: 0, a timeout: the last ACK),
never the request. Pipelining whole requests there would let request k+1 abandon k after each loss,
and k's restart abandon k+1: with most requests losing a chunk, no image would ever finish.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from k210.core.errors import ToolFailure
from k210.firmware import k210wire as w

from .link import SessionLink
from .messages import BoardLinkError, Message, Tensor
from .recovery import Resync
from .timing import ReplyTimer

if TYPE_CHECKING:
    from .samples import SamplePlanner

REWINDS_BEFORE_PROBE = 3  # timeouts of a solo request, resent from its last ACK, before probing with HELLO
FATAL_INFER_ERRORS = {w.E_INFER_FAILED, w.E_TOO_BIG, w.E_UNSUPPORTED, w.E_UNKNOWN_TYPE, w.E_BAD_VERSION}

ResultSink = Callable[[int, list[Tensor], int], None]


MAX_RESULT_BYTES = 64 << 20  # without the model's tensors: far above anything the K210's 8 MiB could hold


def result_limit(outputs: tuple[tuple[int, tuple[int, ...]], ...]) -> int:
    """The largest RESULT blob the model's outputs can make, or MAX_RESULT_BYTES: per output a record header
    with up to 8 dims, and its values as the kmodel's dtype or as float32 (runners that widen uint8)."""
    if not outputs:
        return MAX_RESULT_BYTES
    return sum(8 + 4 * 8 + max(w.tensor_nbytes(dtype, shape), 4 * math.prod(shape)) for dtype, shape in outputs)


@dataclass
class _Attempt:
    index: int
    req: int
    payload: bytes
    chunk: int  # input bytes per frame
    sent_to: int = 0  # input bytes sent so far
    parts: dict[int, bytes] = field(default_factory=dict)
    dead: bool = False
    solo: bool = False  # sent alone: no other request starts before it is done, so losses are resent
    acked: int = 0  # input bytes the board has acknowledged
    generation: int = 0  # bumped at each rewind: replies to older frames no longer steer
    mode: int = 0  # INFER_CHUNK mode (samples.py): payload is then a zlib stream and/or a SHA-256
    result_total: int = 0  # the RESULT blob's size its first part announced
    part_bytes: int = 0  # RESULT part bytes received (resent parts counted again)


@dataclass
class _Sent:
    nbytes: int
    attempt: _Attempt | None
    final: bool
    due: float  # when its last byte reached the board, or when the board said it is working on it
    timed: bool = False
    generation: int = 0
    wire: int = 0  # its size on the wire (nbytes becomes 0 once the board has taken it)
    working: bool = False  # the board said "got it all, running": its RESULT waits on the job timer


class Pipeline:
    """The in-flight bookkeeping of the session's stream (one board, one thread)."""

    def __init__(self, session: SessionLink, take: Callable[[], int | None], payload_of: Callable[[int], bytes],
                 on_result: ResultSink, samples: SamplePlanner | None = None,
                 max_result: int = MAX_RESULT_BYTES) -> None:
        self.s = session
        self.max_result = max_result  # the largest RESULT blob the model can make: more is a lying board
        self.take = take
        self.payload_of = payload_of
        self.samples = samples
        self.on_result = on_result
        self.in_flight: OrderedDict[int, _Sent] = OrderedDict()  # seq -> frame, in send order
        self.in_flight_bytes = 0
        self.retry: deque[int] = deque()
        self.attempts: dict[int, int] = {}
        self.done: set[int] = set()
        self.current: _Attempt | None = None
        self.held: tuple[int, bytes, bool] | None = None  # a built frame waiting for window room
        self.exhausted = False
        self.window = session.window()
        self.sizer = session.sizer
        self.rewinds = 0  # timeouts in a row answered by resending a solo request
        # The board serves frames in order: no reply can come before the one to the frame sent before it,
        # so a frame's wait starts at its last byte's arrival or at the previous reply, whichever is later.
        self.last_reply = 0.0
        # A job (inflate, card write, the model) is not a reply on the line: learnt apart per INFER mode, so
        # that a KEEP request's card write is neither a loss nor a reason to wait longer for every chunk's
        # ACK, and a quick CACHED miss does not teach the host to give up on the next card write.
        self.job_timers: dict[int, ReplyTimer] = {}

    def _chunk_size(self) -> int:
        return self.sizer.chunk()

    def _note_frame(self, sent: _Sent, lost: bool) -> None:
        self.sizer.note(sent.wire, lost)

    # -- one turn of the loop -------------------------------------------------------------------------

    def step(self) -> bool:
        """Send what the window allows, then handle what came back. False when all is done."""
        self._fill()
        if not self.in_flight and self.current is None and not self.retry and self.exhausted:
            return False
        wait = 0.02 if self.in_flight else 0.0
        for msg in self.s.channel.poll(wait):
            self._handle(msg)
        a = self.current
        if a is not None and a.solo and not a.dead and not self.in_flight and a.sent_to >= len(a.payload):
            self._rewind(a, min(a.acked, len(a.payload) - 1))  # all answered, yet no RESULT: ask again
        oldest = next(iter(self.in_flight.values()), None)
        if oldest is not None and self._overdue(oldest, time.monotonic()):
            (self._job_timer(oldest) if oldest.working else self.s.timer).timed_out()
            a = self.current
            if a is not None and a.solo and not a.dead and self.rewinds < REWINDS_BEFORE_PROBE:
                self.rewinds += 1
                self._rewind(a, min(a.acked, len(a.payload) - 1))  # the last byte again: a lost RESULT comes back
                for seq in list(self.in_flight):  # older generations now: forgetting them steers nothing
                    self._forget(seq, lost=True)
                return True
            raise Resync()
        return True

    def _overdue(self, sent: _Sent, now: float) -> bool:
        return self.s.overdue(max(sent.due, self.last_reply), now, self._job_timer(sent) if sent.working else None)

    def _job_timer(self, sent: _Sent) -> ReplyTimer:
        mode = sent.attempt.mode if sent.attempt is not None else 0
        return self.job_timers.setdefault(mode, ReplyTimer())

    def _rewind(self, a: _Attempt, offset: int) -> None:
        """Send a solo request again from `offset`, where the board says it is."""
        if a.dead or a is not self.current:
            return
        self.s.stats.retries += 1
        a.generation += 1
        a.sent_to = offset
        a.chunk = self._chunk_size()
        if self.held is not None:
            self.held = None

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
                    if self.samples is not None and self.samples.waiting() and not self.retry:
                        return  # a CACHED probe is out: its answer says how to send the next images
                    index = self._next_index()
                    if index is None:
                        self.current = None
                        return
                    mode, payload = self.samples.request(index) if self.samples else (0, self.payload_of(index))
                    self.current = _Attempt(index, s.next_req(), payload, self._chunk_size(), mode=mode,
                                            solo=self.sizer.lossy)
                    self.attempts[index] = self.attempts.get(index, 0) + 1
                a = self.current
                if a.sent_to >= len(a.payload):
                    return  # a solo request, all sent: nothing else until it is done
                end = min(a.sent_to + a.chunk, len(a.payload))
                body = w.encode_payload(w.INFER_CHUNK, {"req": a.req, "total": len(a.payload), "offset": a.sent_to,
                                                        "mode": a.mode,
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
            a = self.current
            self.in_flight[seq] = _Sent(len(frame), a, final, due, generation=a.generation if a else 0,
                                        wire=len(frame))
            self.in_flight_bytes += len(frame)
            s.stats.max_in_flight = max(s.stats.max_in_flight, len(self.in_flight))
            self.held = None
            if final and a is not None and not a.solo:
                self.current = None

    # -- replies ------------------------------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        if msg.is_event:
            self.s.on_event(msg)
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
            delay = now - max(sent.due, self.last_reply)
            if sent.working:
                self._job_timer(sent).sample(delay)
            else:
                self.s.timer.sample(delay)
                self._note_frame(sent, lost=False)
            sent.timed = True
        self.last_reply = now
        if sent.attempt is not None and msg.type in (w.ACK, w.RESULT):
            self.rewinds = 0
            if msg.type == w.ACK and msg.fields["req"] == sent.attempt.req:
                sent.attempt.acked = max(sent.attempt.acked, msg.fields["next"])
        if msg.type == w.ACK:
            if sent.final and sent.attempt is not None and msg.fields["next"] == len(sent.attempt.payload):
                # "Got it all, running": the frame has left the board's ring; its RESULT follows.
                self.in_flight_bytes -= sent.nbytes
                sent.nbytes = 0
                sent.due = now
                sent.timed = False
                sent.working = True
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
        if f["req"] != a.req:  # an answer to another request (a replay, a confused board): never this image's
            self.s.stats.wrong_req_results += 1
            return
        total = f["total"]
        if total > self.max_result or (a.parts and total != a.result_total):
            raise BoardLinkError(f"{self.s.name}: the board announced a RESULT of {total} bytes for image {a.index}"
                                 f" (the model's outputs take at most {self.max_result}): it is not this model's")
        a.result_total = total
        before = covered_bytes(a.parts)
        a.parts[f["offset"]] = f["data"]
        a.part_bytes += len(f["data"])
        after = covered_bytes(a.parts)
        if after < total:
            if a.part_bytes > 2 * total + w.CHUNK_OVERHEAD * 4:  # resent parts are fine; endless overlaps are not
                raise BoardLinkError(f"{self.s.name}: the board keeps sending parts of a {total}-byte RESULT for "
                                     f"image {a.index} without completing it")
            if after > before:  # only progress moves the deadline: overlapping parts do not keep it alive
                sent.due = time.monotonic()
            sent.working = False  # the job is done: the rest of the RESULT is line time
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
        if self.samples:
            self.samples.answered(a.index, a.mode)
        self.on_result(a.index, [Tensor(d, s, data) for d, s, data in records], f["micros"])

    def _on_error(self, fields: dict, sent: _Sent) -> None:
        code = fields["code"]
        if code == w.E_NO_MODEL:
            raise Resync()
        if code == w.E_NOT_CACHED and sent.attempt is not None and self.samples:
            a = sent.attempt  # the board does not hold it (or dropped a damaged copy): send its bytes
            self.samples.miss(a.index, damaged=fields["detail"] == 1)
            if not a.dead and a.index not in self.done:
                a.dead = True
                self.retry.appendleft(a.index)
            return
        if code in FATAL_INFER_ERRORS:
            index = sent.attempt.index if sent.attempt else -1
            raise ToolFailure(f"{self.s.name}: the board failed on image {index} "
                              f"({w.ERROR_NAMES.get(code, code)}): {fields['text']}")
        a = sent.attempt
        if a is None:
            return
        if a.solo and code in (w.E_GAP, w.E_STALE):  # the board kept what it has: go on from there
            if sent.generation == a.generation:
                self._rewind(a, fields["detail"] if code == w.E_GAP else 0)
            return
        self._kill(a, fields["text"])

    def _forget(self, seq: int, lost: bool = False) -> None:
        sent = self.in_flight.pop(seq)
        self.in_flight_bytes -= sent.nbytes
        if lost and not sent.timed:
            self._note_frame(sent, lost=True)
        a = sent.attempt
        if lost and sent.final and a is not None:
            if not a.solo:
                self._kill(a, "request or result lost on the line")
            elif sent.generation == a.generation and a is self.current:
                self._rewind(a, min(a.acked, len(a.payload) - 1))

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

    def abandon_all(self, line_fault: bool = True) -> None:
        """Every request in flight is given up (resent later); their frames stay counted until forgotten.
        line_fault=False: the board reset, which says nothing about the line's error rate."""
        for sent in self.in_flight.values():
            if not sent.timed and line_fault and not sent.working:
                self._note_frame(sent, lost=True)
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


def covered_bytes(parts: dict[int, bytes]) -> int:
    """How far the parts, by offset, cover a blob from its start."""
    end = 0
    for offset in sorted(parts):
        if offset > end:
            break
        end = max(end, offset + len(parts[offset]))
    return end
