"""A board whose KPU gets one output wrong, on purpose: any board command that prints `socket://HOST:PORT`
or `PTY <path>` (firmware/c/qemu/qemu_board.py, a runner) behind a pty relay that XORs every byte of one
output of every RESULT with 0x5A, re-encoded so that the frame's CRC still holds.

    python tests/boardfakes/bend_board.py --output 1 -- python firmware/c/qemu/qemu_board.py --elf ...

Prints `PTY <path>` like a runner; leaves, letting its board go, when its stdin closes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import tty
from pathlib import Path

import serial

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boardfakes.hostile_board import blob_fields  # noqa: E402
from k210.firmware import k210wire as w  # noqa: E402


def bend(frame: bytes, output: int) -> bytes:
    """`frame` (one, with its delimiter) as the host gets it: output `output` of a whole RESULT changed."""
    decoded = w.decode_frames(frame)
    if len(decoded) != 1 or decoded[0][1] != w.RESULT:
        return frame
    _, mtype, flags, seq, payload = decoded[0]
    fields = w.decode_message(mtype, payload)
    if fields["offset"] != 0 or len(fields["data"]) != fields["total"]:
        return frame  # a RESULT in parts: passed on as it is
    records = w.parse_result_blob(fields["data"], fields["n_outputs"])
    if output >= len(records):
        return frame
    dtype, shape, data = records[output]
    records[output] = (dtype, shape, bytes(b ^ 0x5A for b in data))
    return w.encode_frame(mtype, flags, seq, w.encode_payload(mtype, {**fields, **blob_fields(records)}))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", type=int, default=0, help="the output to bend (default 0)")
    parser.add_argument("board", nargs="+", help="the board command, after --")
    args = parser.parse_args()
    board = subprocess.Popen(args.board, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert board.stdin is not None and board.stdout is not None
    line = board.stdout.readline().strip()
    url = line[4:] if line.startswith("PTY ") else line
    if not url:
        print("bend_board: the board printed no port", file=sys.stderr)
        return 3
    port = serial.serial_for_url(url, timeout=None)
    master, slave = os.openpty()
    tty.setraw(slave)  # kept open: the host may open and close the pty at will

    def to_host() -> None:
        pending = b""
        while True:
            pending += port.read(max(1, port.in_waiting))
            *frames, pending = pending.split(b"\x00")
            for frame in frames:
                os.write(master, bend(frame + b"\x00", args.output))

    def leave_with_parent() -> None:
        sys.stdin.buffer.read()
        board.stdin.close()  # the board's own way of being let go
        try:
            board.wait(timeout=10)
        except subprocess.TimeoutExpired:
            board.kill()
        os._exit(0)

    threading.Thread(target=to_host, daemon=True).start()
    threading.Thread(target=leave_with_parent, daemon=True).start()
    print(f"PTY {os.ttyname(slave)}", flush=True)
    while True:
        port.write(os.read(master, 65536))


if __name__ == "__main__":
    sys.exit(main())
