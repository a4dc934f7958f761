"""Sending a kmodel to a board: windowed LOAD_CHUNKs, go-back-N on a gap, adaptive on a lossy line.

Chunks carry their offset, so the board acknowledges how far it has the model (ACK next) or says
where a gap starts (GAP detail); the host then goes back to that offset. Everything in flight
behind a lost chunk is wasted, so on a lossy line the window halves on each loss and grows back by
one chunk per window of ACKs, as TCP's congestion window does, and the chunks follow the error rate
measured on the line (framesize.py: tens of bytes at a few errors per thousand bytes).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from k210.core.errors import ToolFailure
from k210.firmware import k210wire as w

from .link import SessionLink
from .messages import ModelInfo
from .model import KModel
from .recovery import UploadRestart

MIN_UPLOAD_CHUNK = 32  # tens of bytes: what still gets through at a few errors per thousand bytes
COMMIT_SECONDS = 30.0  # the board hashes and loads the model: long on a real K210 with a big model


def send_model(session: SessionLink, kmodel: KModel) -> ModelInfo:
    """One attempt at LOAD_BEGIN, the chunks, LOAD_COMMIT. Raises UploadRestart or BoardRestarted to start over."""
    hello = session.hello
    assert hello is not None
    data = kmodel.data
    begin = w.encode_payload(w.LOAD_BEGIN, {"size": len(data), "sha256": kmodel.sha256,
                                            "inputs": list(kmodel.inputs), "outputs": list(kmodel.outputs)})
    session.upload_call(w.LOAD_BEGIN, begin, (w.ACK,))
    sizer = session.upload_sizer
    window = session.window()
    cwnd = float(window)
    acked = 0
    next_offset = 0
    # seq -> (end, bytes, generation, due)
    in_flight: OrderedDict[int, tuple[int, int, int, float]] = OrderedDict()
    in_flight_bytes = 0
    generation = 0  # bumped on every rewind: replies to older chunks no longer steer
    while acked < len(data):
        while next_offset < len(data):
            chunk = sizer.chunk()
            end = min(next_offset + chunk, len(data))
            payload = w.encode_payload(w.LOAD_CHUNK, {"offset": next_offset, "data": data[next_offset:end]})
            seq, frame = session.channel.frame(w.LOAD_CHUNK, payload)
            if in_flight and in_flight_bytes + len(frame) > min(window, cwnd):
                break
            due = session.channel.write(frame)
            in_flight[seq] = (end, len(frame), generation, due)
            in_flight_bytes += len(frame)
            next_offset = end
        for msg in session.channel.poll(0.02):
            if msg.is_event:
                session.on_event(msg)
                continue
            entry = in_flight.get(msg.seq)
            if entry is None:
                session.stats.stale_replies += 1
                continue
            for seq in list(in_flight):  # this one, and every older one: gone from the board's ring
                frame_bytes = in_flight.pop(seq)[1]
                in_flight_bytes -= frame_bytes
                sizer.note(frame_bytes, lost=seq != msg.seq)  # older ones unanswered: lost on the way
                if seq == msg.seq:
                    break
            session.timer.sample(time.monotonic() - entry[3])
            if msg.type == w.ACK:
                acked = max(acked, msg.fields["next"])
                cwnd = min(window, cwnd + entry[1] * entry[1] / cwnd)
            elif msg.type == w.ERROR:
                code, detail = msg.fields["code"], msg.fields["detail"]
                if code == w.E_GAP:
                    if entry[2] == generation:  # the board is missing bytes from `detail` on
                        session.stats.retries += max(0, next_offset - detail) // sizer.chunk() + 1
                        acked = max(acked, min(detail, next_offset))
                        next_offset = detail
                        generation += 1
                        cwnd = max(float(entry[1]), cwnd / 2)
                elif code == w.E_NOT_LOADING:
                    raise UploadRestart()
                else:
                    raise session.upload_refused(msg.fields, kmodel)
        if in_flight and session.overdue(next(iter(in_flight.values()))[3], time.monotonic()):
            session.timer.timed_out()
            session.stats.retries += len(in_flight)
            for _, frame_bytes, _, _ in in_flight.values():
                sizer.note(frame_bytes, lost=True)
            in_flight.clear()
            in_flight_bytes = 0
            next_offset = acked
            generation += 1
            cwnd = max(float(MIN_UPLOAD_CHUNK), cwnd / 2)
    msg = session.upload_call(w.LOAD_COMMIT, b"", (w.MODEL_INFO,), work=(len(data), COMMIT_SECONDS + len(data) / 1e5))
    info = ModelInfo.from_fields(msg.fields)
    if info.sha256 != kmodel.sha256 or info.size != len(data):
        raise ToolFailure(f"{session.name}: after the upload the board reports model {info.sha256[:12]}… of "
                          f"{info.size} bytes, not {kmodel.sha256[:12]}…")
    return info
