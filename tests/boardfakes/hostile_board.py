"""A board that lies at the frame level (issue 22): k210runner.Runner with the arithmetic backend behind a
pseudo-terminal, and a relay between them that rewrites what the board says, as `--lie` picks:

    honest          nothing rewritten (the golden board of the tests)
    zero-outputs    every RESULT carries no output at all
    replay          every RESULT is the first one the board sent (its req changed to the request's)
    wrong-values    every output byte of every RESULT is changed (CRC recomputed: the line is fine)
    wrong-shape     every output's dims are changed (same byte count)
    wrong-dtype     every output's dtype is changed (same byte size: uint8 <-> int8, float32 -> int32)
    tiny-frame      HELLO max_frame 22 (a chunk of data could not fit)
    tiny-window     HELLO rx_window 100 (not one frame fits)
    small-window    HELLO rx_window 300 with max_frame 1024: honest otherwise, frames above 300 bytes lost
    huge-fields     HELLO max_frame and rx_window 0xFFFFFFFF: honest otherwise
    no-input        HELLO max_input 0
    bad-caps        HELLO caps with a cache size but no CACHE bit
    log-flood       40 LOG frames (with terminal escapes and newlines) after every reply
    cache-claims    HELLO announces a sample cache; every CACHED request is answered with a RESULT although
                    the board never received the sample
    escape-error    every RESULT becomes ERROR INFER_FAILED whose text holds newlines and terminal escapes
    reset-shrinks   honest for 5 images, then a reboot whose HELLO says max_frame 22 (the fields change mid-run)
    result-flood    the first RESULT declares 1 GiB and comes in overlapping parts, one byte further each,
                    without end (the host must neither wait for ever nor keep every part)

    python tests/boardfakes/hostile_board.py --lie replay [--stats FILE]

Prints `PTY <path>` like a runner; leaves when its stdin closes. --stats: a JSON file written as it
goes, with the largest frame (wire bytes, delimiter included) the host sent and frames dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import threading
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boardfakes.links import ArithBackend, MemoryStore  # noqa: E402
from k210.firmware import k210runner  # noqa: E402
from k210.firmware import k210wire as w  # noqa: E402

LIES = ("honest", "zero-outputs", "replay", "wrong-values", "wrong-shape", "wrong-dtype", "tiny-frame",
        "tiny-window", "small-window", "huge-fields", "no-input", "bad-caps", "log-flood", "cache-claims",
        "result-flood", "reset-shrinks", "escape-error")
INNER_MAX_FRAME = 4096  # the runner's own frames: a whole RESULT of the 784-byte arithmetic model fits one
SMALL_WINDOW = 300
FLOOD = 40


class Relay:
    def __init__(self, lie: str, fd: int, stats: Path | None) -> None:
        self.lie = lie
        self.fd = fd
        self.stats_path = stats
        self.stats = {"largest_host_frame": 0, "dropped_host_frames": 0, "host_frames": 0}
        self.boot()
        self.first_result: dict | None = None
        self.results = 0
        self.rebooted = False
        self.event_seq = 0x8000
        self.request_modes: dict[int, int] = {}

    def boot(self) -> None:
        """A fresh runner: a new nonce, no model (what a reset leaves)."""
        self.backend = ArithBackend()
        nonce = int.from_bytes(os.urandom(4), "little")
        self.runner = k210runner.Runner(self.backend, self.to_host, MemoryStore(), nonce, max_frame=INNER_MAX_FRAME,
                                        rx_window=16384, max_model=1 << 20, max_input=65536, firmware="hostile",
                                        fw_version="1")

    # -- board -> host ----------------------------------------------------------------------------------

    def to_host(self, frame: bytes) -> None:
        for _version, mtype, flags, seq, payload in w.decode_frames(bytes(frame)):
            fields = w.decode_message(mtype, payload)
            if self.lie == "escape-error" and mtype == w.RESULT:
                text = "boom\nsecond line\x1b[2J\x1b]0;owned\x07\r"
                error = {"code": w.E_INFER_FAILED, "req": fields["req"], "detail": 0, "text": text}
                os.write(self.fd, w.encode_frame(w.ERROR, flags, seq, w.encode_payload(w.ERROR, error)))
                return
            if self.lie == "result-flood" and mtype == w.RESULT:
                self.flood_result(seq, fields)
                return
            out = self.rewrite(mtype, fields)
            os.write(self.fd, w.encode_frame(mtype, flags, seq, w.encode_payload(mtype, out)) if out is not None
                     else bytes(frame))
            if mtype == w.RESULT:
                self.results += 1
                if self.lie == "reset-shrinks" and self.results == 5:
                    self.rebooted = True
                    self.boot()
                    self.runner.announce()
            if self.lie == "log-flood" and flags & w.FLAG_REPLY:
                for i in range(FLOOD):
                    text = f"\x1b[2J\x1b[31mflood {i}\nTraceback (most recent call last):\r" + "x" * 150
                    self.event_seq = (self.event_seq + 1) & 0xFFFF
                    os.write(self.fd, w.encode_frame(w.LOG, w.FLAG_EVENT, self.event_seq,
                                                     w.encode_payload(w.LOG, {"level": w.LOG_ERROR, "text": text})))

    def flood_result(self, seq: int, f: dict) -> None:
        data = (f["data"] * 4)[:3000]
        for offset in range(200_000):  # ~600 MB of parts, if the host takes them all
            part = {**f, "total": 1 << 30, "offset": offset, "data": data}
            try:
                os.write(self.fd, w.encode_frame(w.RESULT, w.FLAG_REPLY, seq, w.encode_payload(w.RESULT, part)))
            except OSError:
                return

    def rewrite(self, mtype: int, f: dict) -> dict | None:
        """The fields to send instead, or None to pass the frame on as it is."""
        lie = self.lie
        if mtype == w.HELLO:
            changes = {"tiny-frame": {"max_frame": 22}, "tiny-window": {"rx_window": 100},
                       "small-window": {"max_frame": 1024, "rx_window": SMALL_WINDOW},
                       "huge-fields": {"max_frame": 0xFFFFFFFF, "rx_window": 0xFFFFFFFF},
                       "no-input": {"max_input": 0}, "bad-caps": {"caps": 20 << w.CAP_CACHE_LOG2_SHIFT},
                       "cache-claims": {"caps": w.CAP_CACHE | (20 << w.CAP_CACHE_LOG2_SHIFT)},
                       "reset-shrinks": {"max_frame": 22} if self.rebooted else None}.get(lie)
            return {**f, **changes} if changes else None
        if mtype != w.RESULT:
            return None
        assert f["offset"] == 0 and len(f["data"]) == f["total"], "a RESULT in parts: raise INNER_MAX_FRAME"
        if self.first_result is None:
            self.first_result = dict(f)
        if lie == "zero-outputs":
            return {**f, "n_outputs": 0, "total": 0, "data": b""}
        if lie == "replay":
            return {**self.first_result, "req": f["req"]}
        records = w.parse_result_blob(f["data"], f["n_outputs"])
        if lie == "wrong-values":
            records = [(d, s, bytes(b ^ 0x5A for b in data)) for d, s, data in records]
        elif lie == "wrong-shape":
            records = [(d, (1, *s) if len(s) < 2 else tuple(reversed(s)) + (1,), data) for d, s, data in records]
        elif lie == "wrong-dtype":
            swap = {w.DT_UINT8: w.DT_INT8, w.DT_INT8: w.DT_UINT8, w.DT_FLOAT32: w.DT_INT32}
            records = [(swap.get(d, d), s, data) for d, s, data in records]
        else:
            return None
        return {**f, **blob_fields(records)}

    # -- host -> board -----------------------------------------------------------------------------------

    def from_host(self, frame: bytes) -> None:
        """One frame the host sent (with its delimiter)."""
        self.stats["host_frames"] += 1
        self.stats["largest_host_frame"] = max(self.stats["largest_host_frame"], len(frame))
        if self.lie == "small-window" and len(frame) > SMALL_WINDOW:
            self.stats["dropped_host_frames"] += 1  # what the board's ring would have lost
            return
        if self.lie == "cache-claims":
            decoded = w.decode_frames(frame)
            if decoded and decoded[0][1] == w.INFER_CHUNK:
                _, _, _, seq, payload = decoded[0]
                f = w.decode_message(w.INFER_CHUNK, payload)
                if f.get("mode", 0) & w.MODE_CACHED:
                    self.claim(seq, f["req"])
                    return
        self.runner.feed(frame)

    def claim(self, seq: int, req: int) -> None:
        """Answer a CACHED request as if the sample were here: outputs of an all-zero input."""
        micros, outputs = self.backend.infer(memoryview(bytes(784)), 784) if self.backend.model else (1, [])
        records = [(d, tuple(s), bytes(data)) for d, s, data in outputs]
        fields = {"req": req, "n_outputs": len(records), "micros": micros, "offset": 0, **blob_fields(records)}
        os.write(self.fd, w.encode_frame(w.RESULT, w.FLAG_REPLY, seq, w.encode_payload(w.RESULT, fields)))

    def save_stats(self) -> None:
        if self.stats_path is not None:
            tmp = self.stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.stats))
            tmp.replace(self.stats_path)


def blob_fields(records: list[tuple[int, tuple[int, ...], bytes]]) -> dict:
    blob = bytearray()
    for dtype, shape, data in records:
        blob += struct.pack(w.RECORD_FMT, dtype, len(shape), 0, len(data))
        blob += b"".join(struct.pack("<I", d) for d in shape) + data
    return {"n_outputs": len(records), "total": len(blob), "data": bytes(blob)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lie", choices=LIES, default="honest")
    parser.add_argument("--stats", type=Path)
    args = parser.parse_args()
    master, slave = os.openpty()
    tty.setraw(slave)  # kept open: the host may open and close the pty at will
    relay = Relay(args.lie, master, args.stats)

    def leave_with_parent() -> None:
        sys.stdin.buffer.read()
        relay.save_stats()
        os._exit(0)

    threading.Thread(target=leave_with_parent, daemon=True).start()
    print(f"PTY {os.ttyname(slave)}", flush=True)
    pending = b""
    while True:
        pending += os.read(master, 65536)
        *frames, pending = pending.split(b"\x00")
        for frame in frames:
            relay.from_host(frame + b"\x00")
        relay.save_stats()


if __name__ == "__main__":
    sys.exit(main())
