"""Where a board comes from, behind one interface (as twister's handlers): start() gives a port URL.

    SerialDevice    a real board on a port the user names (/dev/ttyUSB0, socket://, rfc2217://)
    RunnerProcess   a local process that serves the protocol and prints its port on its first
                    stdout line, either the URL itself or `PTY /dev/pts/N`:
                      virtual_board(...)  `k210 board` (main.py under CPython, nncase as KPU)
                      c_runner(...)       firmware/c's host build (`k210_runner_host --pty`)
                      any --board-cmd
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod

from k210.core.errors import ToolFailure

LOG_TAIL_BYTES = 8192
STOP_WAIT_S = 5.0  # a board told to leave (stdin closed) removes its work directory first; a busy host is slow


class BoardHandler(ABC):
    @abstractmethod
    def start(self) -> str:
        """Bring the board up; the pyserial URL to reach it."""

    def stop(self) -> None:  # noqa: B027 - most handlers have nothing to let go of
        """Let the board go."""

    @abstractmethod
    def describe(self) -> str: ...


class SerialDevice(BoardHandler):
    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> str:
        return self.url

    def describe(self) -> str:
        return self.url


class RunnerProcess(BoardHandler):
    """A board that is a process on this machine; it exits when we close its stdin."""

    def __init__(self, command: list[str], name: str, startup_timeout: float = 60.0) -> None:
        self.command = command
        self.name = name
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        # The board's stderr, in a file with no name: nothing is left behind even if we are killed.
        self._log = tempfile.TemporaryFile(prefix="k210-board-", suffix=".log")  # noqa: SIM115
        self.url = ""

    def start(self) -> str:
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log, start_new_session=True)
        except OSError as exc:
            raise ToolFailure(f"cannot start {self.name} ({shlex.join(self.command)}): {exc.strerror}") from None
        line = self._first_line()
        self.url = line.split(None, 1)[1] if line.startswith("PTY ") else line
        return self.url

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.startup_timeout
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                try:  # stdout closed: the process is on its way out, let it finish saying why
                    code = self.proc.wait(timeout=1) if ready else self.proc.poll()
                except subprocess.TimeoutExpired:
                    code = None
                tail = self.log_tail()  # before stop() closes the log
                self.stop()
                why = f"exited with {code}" if code is not None else f"printed no port in {self.startup_timeout:g} s"
                raise ToolFailure(f"{self.name} {why}: {tail or shlex.join(self.command)}")
            data += chunk
        return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()

    def log_tail(self, lines: int = 3) -> str:
        try:  # pread: the board writes at the shared file offset, which a seek here would move
            fd = self._log.fileno()
            size = os.fstat(fd).st_size
            text = os.pread(fd, LOG_TAIL_BYTES, max(0, size - LOG_TAIL_BYTES)).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # a board started with --exit-with-parent leaves now
            except OSError:
                pass
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:  # a runner that does not watch its stdin
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None
        self._log.close()

    def describe(self) -> str:
        return f"{self.name} on {self.url}" if self.url else self.name


def virtual_board(*, kmodel: str | None = None, firmware: str = "canmv", baud: int = 1_500_000,
                  faults: str | None = None, fault_seed: int = 0, port: str = "pty",
                  extra: list[str] | None = None) -> RunnerProcess:
    """`k210 board` as a child process that dies with us."""
    command = [sys.executable, "-m", "k210.host.cli", "board", "--exit-with-parent", "--firmware", firmware,
               "--baud", str(baud), "--port", port]
    if kmodel:
        command.append(str(kmodel))
    if faults:
        command += ["--faults", faults, "--fault-seed", str(fault_seed)]
    command += extra or []
    return RunnerProcess(command, f"virtual {firmware} board")


def c_runner(binary: str | os.PathLike[str], *, model: str | None = None) -> RunnerProcess:
    """firmware/c's host build: the C protocol loop with its arithmetic backend, on a pty."""
    command = [str(binary), "--pty", "--exit-with-parent"] + (["--model", str(model)] if model else [])
    return RunnerProcess(command, "C runner (host build)")


def board_command(text: str) -> RunnerProcess:
    return RunnerProcess(shlex.split(text), "board command")
