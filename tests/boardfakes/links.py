"""Links for protocol tests: an in-process board (k210runner.Runner behind a pyserial-like port),
a noisy wrapper that damages chosen frames, and the helpers that build and start the C runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from k210.firmware import k210runner
from k210.firmware import k210wire as w

from .arith_model import arith_outputs, parse_arith_kmodel

REPO = Path(__file__).resolve().parents[2]
C_DIR = REPO / "firmware" / "c"
C_BUILD = C_DIR / "build-host"


class ArithBackend:
    """k210runner backend running the arithmetic fake kmodel in Python (same outputs as the C one)."""

    name = "py-arith"

    def __init__(self, versions: Iterable[int] = (3, 4, 5)):
        self.kmodel_versions = tuple(versions)
        self.model: tuple[int, int, int, int] | None = None
        self.infer_calls = 0

    def why_not(self, version: int) -> str:
        return f"py-arith loads {self.kmodel_versions}, this is v{version}"

    def load(self, source: Any, size: int, version: int, inputs: list, outputs: list) -> tuple[list, list]:
        data = bytes(source)
        self.model = parse_arith_kmodel(data)
        n = self.model[3]
        return [(w.DT_UINT8, (n,))], [(w.DT_UINT8, (n,)), (w.DT_FLOAT32, (1,))]

    def unload(self) -> None:
        self.model = None

    def infer(self, data: memoryview, n: int) -> tuple[int, list]:
        assert self.model is not None
        self.infer_calls += 1
        out0, total = arith_outputs(bytes(data[:n]), self.model[1], self.model[2])
        import struct

        return 42, [(w.DT_UINT8, (n,), out0), (w.DT_FLOAT32, (1,), struct.pack("<f", total))]


class MemoryStore:
    """Upload storage in a bytearray; finish() hands the bytes to the backend as the 'source'."""

    def __init__(self) -> None:
        self.data = bytearray()

    def begin(self, size: int) -> None:
        self.data = bytearray()

    def write(self, chunk: Any) -> None:
        self.data += bytes(chunk)

    def finish(self) -> bytes:
        return bytes(self.data)

    def abort(self) -> None:
        self.data = bytearray()


class InProcessPort:
    """pyserial-like port whose other end is a Runner in this process (replies appear at once)."""

    baudrate = 1_500_000

    def __init__(self) -> None:
        self.rx = bytearray()
        self.timeout: float | None = 0.0
        self.runner: k210runner.Runner | None = None

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def board_send(self, data: Any) -> None:
        self.rx += bytes(data)

    def write(self, data: bytes) -> int:
        assert self.runner is not None
        self.runner.feed(data)
        return len(data)

    def read(self, n: int = 1) -> bytes:
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def close(self) -> None:
        pass


def in_process_board(backend: Any | None = None, **runner_kwargs: Any) -> tuple[k210runner.Runner, InProcessPort]:
    port = InProcessPort()
    kwargs = {"max_frame": 256, "max_model": 1 << 20, "max_input": 4096, "firmware": "test", "fw_version": "0"}
    kwargs.update(runner_kwargs)
    runner = k210runner.Runner(backend or ArithBackend(), port.board_send, MemoryStore(), 0x1234, **kwargs)
    port.runner = runner
    return runner, port


class NoisyPort:
    """Wraps a port; damages the host's n-th written frame as `plan` says (0-based frame index):
    'drop', 'corrupt' (flip a byte, CRC fails), 'dup' (send twice), 'garbage' (noise in front)."""

    def __init__(self, port: Any, plan: dict[int, str]):
        self.port = port
        self.plan = dict(plan)
        self.count = 0
        self.applied: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("port", "plan", "count", "applied"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.port, name, value)

    def write(self, data: bytes) -> int:
        action = self.plan.pop(self.count, None)
        self.count += 1
        if action:
            self.applied.append(action)
        if action == "drop":
            return len(data)
        if action == "corrupt":
            damaged = bytearray(data)
            damaged[len(damaged) // 2] ^= 0x5A if damaged[len(damaged) // 2] not in (0, 0x5A) else 0x01
            self.port.write(bytes(damaged))
            return len(data)
        if action == "dup":
            self.port.write(data)
        if action == "garbage":
            self.port.write(b"\x55\xaa\x00\x13\x37\xfe")
        self.port.write(data)
        return len(data)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/bootstrap.sh installs it)")
    return path


def build_c(target: str) -> Path:
    """`make <target>` in firmware/c into build-host/ (incremental); returns the build folder."""
    require_tool("make")
    result = subprocess.run(["make", "-s", "-C", str(C_DIR), target, f"BUILD={C_BUILD}"], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.fail(f"make {target} failed:\n{result.stdout}\n{result.stderr}")
    return C_BUILD


def start_pty_board(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start a board process that prints `PTY <path>` first; returns (process, path)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PTY "):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"{argv[0]} did not report a pty: {line!r} {err}")
    return proc, line.split(maxsplit=1)[1].strip()


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


PYTHON = sys.executable
