"""A board that is wrong on purpose: the C runner's host build behind a pty relay that flips the lowest bit
of the first byte of every image chunk it passes on (re-encoded, so the frame's CRC still holds).

    python tests/boardfakes/skew_board.py firmware/c/build-host/k210_runner_host

Prints `PTY <path>` like the runner itself; leaves when its stdin closes (the harness letting it go).
Send images uncompressed and uncached (`k210 hil --no-zlib --no-cache`): a flipped bit in a zlib stream
or a sample hash would be an error, not a different output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tty

from k210.firmware import k210wire as w


def skew(frame: bytes) -> bytes:
    """`frame` (one, with its delimiter) as the board gets it: image chunks with one bit flipped."""
    decoded = w.decode_frames(frame)
    if len(decoded) != 1 or decoded[0][1] != w.INFER_CHUNK or len(decoded[0][4]) <= w.INFER_CHUNK_LEN:
        return frame
    _, mtype, flags, seq, payload = decoded[0]
    changed = bytearray(payload)
    changed[w.INFER_CHUNK_LEN] ^= 1
    return w.encode_frame(mtype, flags, seq, bytes(changed))


def main() -> int:
    master, slave = os.openpty()
    tty.setraw(slave)  # kept open: the host may open and close the pty at will
    board = subprocess.Popen([sys.argv[1], "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert board.stdin is not None and board.stdout is not None
    board_out, board_in = board.stdout, board.stdin

    def to_host() -> None:
        while chunk := board_out.read1(65536):
            os.write(master, chunk)

    def leave_with_parent() -> None:
        sys.stdin.buffer.read()
        board.terminate()
        board.wait()
        os._exit(0)

    threading.Thread(target=to_host, daemon=True).start()
    threading.Thread(target=leave_with_parent, daemon=True).start()
    print(f"PTY {os.ttyname(slave)}", flush=True)
    pending = b""
    while True:
        pending += os.read(master, 65536)
        *frames, pending = pending.split(b"\x00")
        board_in.write(b"".join(skew(f + b"\x00") for f in frames))
        board_in.flush()


if __name__ == "__main__":
    sys.exit(main())
