#!/usr/bin/env python3
"""Boot the C runner's RISC-V build (k210_runner_qemu.elf) in qemu-system-riscv64 -M virt as a board.

    python3 firmware/c/qemu/qemu_board.py [--elf PATH] [--monitor SOCKET]

Prints `socket://127.0.0.1:PORT` (the board's UART, QEMU's TCP server) once QEMU is up, which is what
`k210 hil --board-cmd` reads,
then keeps QEMU running until its own stdin closes (the harness's way of letting a board go) or it is
killed. --monitor puts QEMU's monitor on a Unix socket, so a test can read the guest's memory (the painted
stack) with `pmemsave`. Needs only the Python standard library and Debian's qemu-system-misc.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ELF = Path(__file__).resolve().parents[1] / "build-host" / "qemu" / "k210_runner_qemu.elf"


def monitor_command(path: str, command: str, timeout: float = 10.0) -> bool:
    """Send one command to QEMU's monitor on a Unix socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(path)
                sock.recv(4096)  # the banner and prompt
                sock.sendall(command.encode() + b"\n")
                sock.recv(4096)
                return True
        except OSError:
            time.sleep(0.05)
    return False


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
    monitor = args.monitor or os.path.join(tempfile.mkdtemp(prefix="k210-qemu-"), "monitor.sock")
    with socket.socket() as probe:  # a free port for QEMU's TCP serial server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The UART on a TCP socket, not a pty: a pty's line discipline can mangle bytes until someone sets it raw.
    cmd = ["qemu-system-riscv64", "-M", "virt", "-m", "64M", "-smp", "1", "-bios", "none", "-kernel", str(args.elf),
           "-nodefaults", "-display", "none", "-serial", f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on",
           "-monitor", f"unix:{monitor},server=on,wait=off"]
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert qemu.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and qemu.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    if qemu.poll() is not None or not monitor_command(monitor, "info status"):
        qemu.kill()
        out = qemu.stdout.read().decode(errors="replace")
        print(f"qemu_board: QEMU did not come up: {out[-500:]}", file=sys.stderr)
        return 3
    print(f"socket://127.0.0.1:{port}", flush=True)
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
