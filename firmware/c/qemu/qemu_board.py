#!/usr/bin/env python3
"""Boot the C runner's RISC-V build (k210_runner_qemu.elf) in qemu-system-riscv64 -M virt as a board.

    python3 firmware/c/qemu/qemu_board.py [--elf PATH] [--monitor SOCKET]

Prints `socket://127.0.0.1:PORT` (the board's UART, QEMU's TCP server) once QEMU is up, which is what
`k210 hil --board-cmd` reads,
then keeps QEMU running until its own stdin closes (the harness's way of letting a board go) or it is
killed. --monitor puts QEMU's monitor on a Unix socket, so a test can read the guest's memory (the painted
stack) with `pmemsave`. Needs the Python standard library and Debian's qemu-system-misc; a kmodel v5 runs
too, with nncase (the project's ml extra) in this Python.

QEMU has no KPU. The firmware's KPU calls (qemu/bsp.c: kpu_load_kmodel, kpu_run_kmodel, kpu_get_output,
which on a K210 run the nncase runtime of kendryte-standalone-sdk, lib/nncase/v1/nncase_v1.cpp) reach
this process through RISC-V semihosting: QEMU runs in a folder with two FIFOs, and a thread here runs
nncase's simulator on the kmodel the runner received and hands back every output tensor's bytes, as the
virtual board uses the simulator for its KPU. Everything else (wire, inflate, SHA-256, the buffers) is
the firmware's own RISC-V code. The arithmetic fake kmodel ("ARTH") stays inside the guest.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

DEFAULT_ELF = Path(__file__).resolve().parents[1] / "build-host" / "qemu" / "k210_runner_qemu.elf"
KPU_REQUEST, KPU_REPLY = "k210_kpu_request", "k210_kpu_reply"  # bsp.c's BRIDGE_REQUEST / BRIDGE_REPLY
FAILED = struct.pack("<i", -1)


def read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        piece = stream.read(n - len(data))
        if not piece:
            return None
        data += piece
    return bytes(data)


class SimulatorKpu:
    """The KPU behind bsp.c's bridge: LOAD and RUN requests answered by nncase's simulator."""

    def __init__(self) -> None:
        self.model = None

    def answer(self, op: int, body: bytes) -> bytes:
        try:
            if op == ord("L"):
                self.model = None
                from k210.host.virtualboard.kpu import SimulatedModel  # nncase, numpy: only for a real kmodel

                self.model = SimulatedModel(body)
                return struct.pack("<iI", 0, self.model.input_bytes)
            if op == ord("R") and self.model is not None:
                outputs = [o.tobytes() for o in self.model.run(body)]
                return struct.pack("<iI", 0, len(outputs)) + b"".join(struct.pack("<I", len(o)) + o for o in outputs)
            raise ValueError(f"request {op:#x} with no model loaded" if op == ord("R") else f"unknown request {op:#x}")
        except Exception as exc:  # the guest's KPU call fails, as the runtime's would; QEMU goes on
            print(f"qemu_board: KPU bridge: {type(exc).__name__}: {exc}"[:400], file=sys.stderr, flush=True)
            return FAILED + bytes(4)


def serve_kpu(folder: Path) -> None:
    """Answer the guest's KPU requests for as long as QEMU runs (the FIFOs reopened if the guest's end closes)."""
    kpu = SimulatorKpu()
    while True:
        with open(folder / KPU_REQUEST, "rb", buffering=0) as requests, \
                open(folder / KPU_REPLY, "wb", buffering=0) as replies:
            while (head := read_exact(requests, 8)) is not None:
                op, size = struct.unpack("<II", head)
                body = read_exact(requests, size)
                if body is None:
                    break
                replies.write(kpu.answer(op, body))


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
    folder = Path(tempfile.mkdtemp(prefix="k210-qemu-"))  # QEMU's working folder: the KPU bridge's FIFOs
    monitor = os.path.abspath(args.monitor) if args.monitor else str(folder / "monitor.sock")
    for name in (KPU_REQUEST, KPU_REPLY):
        os.mkfifo(folder / name, 0o600)
    threading.Thread(target=serve_kpu, args=(folder,), daemon=True).start()
    with socket.socket() as probe:  # a free port for QEMU's TCP serial server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The UART on a TCP socket, not a pty: a pty's line discipline can mangle bytes until someone sets it raw.
    cmd = ["qemu-system-riscv64", "-M", "virt", "-m", "64M", "-smp", "1", "-bios", "none",
           "-kernel", str(args.elf.resolve()), "-nodefaults", "-display", "none",
           "-serial", f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on",
           "-monitor", f"unix:{monitor},server=on,wait=off", "-semihosting-config", "enable=on,target=native"]
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=folder)
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
        shutil.rmtree(folder, ignore_errors=True)
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
        shutil.rmtree(folder, ignore_errors=True)
    return qemu.returncode if qemu.returncode and qemu.returncode > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
