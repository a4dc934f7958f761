#!/usr/bin/env python3
"""Boot the C runner's RISC-V build (k210_runner_qemu.elf) in qemu-system-riscv64 -M virt as a board.

    python3 firmware/c/qemu/qemu_board.py [--elf PATH] [--monitor SOCKET]

Prints `PTY /dev/pts/N` (the board's UART) once QEMU is up, which is what `k210 hil --board-cmd` reads,
then keeps QEMU running until its own stdin closes (the harness's way of letting a board go) or it is
killed. --monitor puts QEMU's monitor on a Unix socket, so a test can read the guest's memory (the painted
stack) with `pmemsave`. Needs only the Python standard library and Debian's qemu-system-misc.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import time
import tty
from pathlib import Path

DEFAULT_ELF = Path(__file__).resolve().parents[1] / "build-host" / "qemu" / "k210_runner_qemu.elf"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elf", type=Path, default=DEFAULT_ELF, help=f"the firmware (default {DEFAULT_ELF})")
    parser.add_argument("--monitor", help="Unix socket path for QEMU's monitor")
    args = parser.parse_args()
    if shutil.which("qemu-system-riscv64") is None:
        print("qemu_board: qemu-system-riscv64 not found (Debian package qemu-system-misc)", file=sys.stderr)
        return 3
    if not args.elf.is_file():
        print(f"qemu_board: {args.elf} not found (make -C firmware/c qemu)", file=sys.stderr)
        return 3
    cmd = ["qemu-system-riscv64", "-M", "virt", "-m", "64M", "-smp", "1", "-bios", "none", "-kernel", str(args.elf),
           "-nodefaults", "-display", "none", "-serial", "pty",
           "-monitor", f"unix:{args.monitor},server=on,wait=off" if args.monitor else "none"]
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert qemu.stdout is not None
    pty = None
    deadline = time.monotonic() + 20
    text = b""
    while pty is None and time.monotonic() < deadline:
        ready, _, _ = select.select([qemu.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(qemu.stdout.fileno(), 4096)
            if not chunk:
                break
            text += chunk
            found = re.search(rb"char device redirected to (/dev/pts/\d+)", text)
            pty = found.group(1).decode() if found else None
    if pty is None:
        qemu.kill()
        print(f"qemu_board: QEMU gave no pty: {text.decode(errors='replace')[-500:]}", file=sys.stderr)
        return 3
    # Hold the pty's other side open (raw, never read): QEMU then sees a connection at once instead of
    # polling for one every second, and a host may open and close the port at will.
    keep = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(keep)
    print(f"PTY {pty}", flush=True)
    try:
        while qemu.poll() is None:
            ready, _, _ = select.select([sys.stdin, qemu.stdout], [], [], 1.0)
            if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
                break  # our parent let the board go
            if qemu.stdout in ready and not os.read(qemu.stdout.fileno(), 4096):
                break
    except KeyboardInterrupt:
        pass
    finally:
        if qemu.poll() is None:
            qemu.terminate()
            try:
                qemu.wait(timeout=5)
            except subprocess.TimeoutExpired:
                qemu.kill()
                qemu.wait()
    return qemu.returncode if qemu.returncode and qemu.returncode > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
