"""A MicroPython raw-REPL client for MaixPy/CanMV boards, over any pyserial-like port.

The protocol (MicroPython's pyexec.c): Ctrl-C interrupts the running program (main.py), Ctrl-A
switches to the raw REPL, which answers "raw REPL; CTRL-B to exit\\r\\n>". Code is then sent as
plain text and ended with Ctrl-D; the board answers "OK", runs it, and sends its stdout, "\\x04",
the traceback if it raised, "\\x04", and the prompt ">". Ctrl-B goes back to the friendly REPL.

Old MicroPython ports (MaixPy is 1.9-1.11 based) have no raw-paste flow control, so code goes out
in small writes with a pause between them, so that the board's UART buffer keeps up.
"""

from __future__ import annotations

import time
from typing import Protocol

from .errors import DeployFailed

CTRL_A, CTRL_B, CTRL_C, CTRL_D = b"\x01", b"\x02", b"\x03", b"\x04"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
EOT = b"\x04"


class SerialLike(Protocol):
    timeout: float | None

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    @property
    def in_waiting(self) -> int: ...

    def reset_input_buffer(self) -> None: ...


class RemoteError(DeployFailed):
    """Code sent to the board raised; `exception` is the last traceback line, e.g. 'OSError: 28'."""

    def __init__(self, traceback: str) -> None:
        self.traceback = traceback.strip()
        lines = [line for line in self.traceback.splitlines() if line.strip()]
        self.exception = lines[-1].strip() if lines else "unknown error"
        super().__init__(f"the board raised {self.exception}")


class RawRepl:
    def __init__(
        self,
        port: SerialLike,
        *,
        name: str = "the board",
        timeout: float = 10.0,
        write_chunk: int = 256,
        write_pause: float = 0.01,
    ) -> None:
        self.port = port
        self.name = name
        self.timeout = timeout
        self.write_chunk = write_chunk
        self.write_pause = write_pause
        self._buffer = bytearray()
        self.in_raw_mode = False

    # ---- session ------------------------------------------------------------------------------
    def enter(self, connect_timeout: float = 10.0) -> None:
        """Interrupt whatever runs and get the raw prompt; retry while the board is (re)booting."""
        deadline = time.monotonic() + connect_timeout
        while True:
            if self._try_enter(min(1.5, max(0.1, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                raise DeployFailed(
                    f"no MicroPython raw REPL on {self.name} within {connect_timeout:g} s: is MaixPy/CanMV "
                    f"running on it (not the boot ROM, kflash, or a C program), and is the port right? "
                    f"A main.py that disables Ctrl-C also blocks this"
                )

    def _try_enter(self, wait: float) -> bool:
        self.port.write(b"\r" + CTRL_C + CTRL_C)
        time.sleep(0.1)
        self._drain()
        self.port.write(b"\r" + CTRL_A)
        try:
            self._read_until(RAW_BANNER, timeout=wait)
            self.in_raw_mode = True
            # A board caught mid-boot can start main.py right after this: check that code runs.
            if self.exec("print('k210-ready')", timeout=min(2.0, self.timeout)).strip() == "k210-ready":
                return True
        except DeployFailed:
            pass
        self.in_raw_mode = False
        return False

    def exit(self) -> None:
        """Back to the friendly REPL (the board keeps running; main.py does not restart)."""
        if self.in_raw_mode:
            self.port.write(b"\r" + CTRL_B)
            self.in_raw_mode = False

    # ---- running code -------------------------------------------------------------------------
    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run `code` on the board and return what it printed; raise RemoteError if it raised."""
        self._send_code(code)
        timeout = self.timeout if timeout is None else timeout
        stdout = self._read_until(EOT, timeout)[:-1]
        stderr = self._read_until(EOT, timeout)[:-1]
        self._read_until(b">", timeout)
        if stderr.strip():
            raise RemoteError(stderr.decode("utf-8", "replace"))
        return stdout.decode("utf-8", "replace")

    def exec_and_forget(self, code: str) -> None:
        """Start code that never returns (machine.reset()); only its acceptance is awaited."""
        self._send_code(code)
        self.in_raw_mode = False

    def _send_code(self, code: str) -> None:
        if not self.in_raw_mode:
            raise DeployFailed("internal error: raw REPL not entered")
        data = code.encode("utf-8")
        if not self.write_pause:  # a fast link (USB CDC, TCP): one write, no pacing needed
            self.port.write(data + CTRL_D)
        else:
            for start in range(0, len(data), self.write_chunk):
                self.port.write(data[start : start + self.write_chunk])
                time.sleep(self.write_pause)
            self.port.write(CTRL_D)
        answer = self._read_exactly(2, self.timeout)
        if answer != b"OK":
            raise DeployFailed(f"{self.name} did not accept the code (answered {answer!r}, expected b'OK')")

    # ---- reading ------------------------------------------------------------------------------
    def _read_until(self, marker: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            index = self._buffer.find(marker)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                return data
            if time.monotonic() > deadline:
                seen = bytes(self._buffer[-60:])
                raise DeployFailed(
                    f"timed out after {timeout:g} s waiting for {marker!r} from {self.name} (last bytes {seen!r})"
                )
            self._buffer += self.port.read(max(1, self.port.in_waiting))

    def _read_exactly(self, size: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buffer) < size and time.monotonic() <= deadline:
            self._buffer += self.port.read(max(1, size - len(self._buffer)))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _drain(self) -> None:
        """Throw away what the board printed so far (boot messages, main.py output, the Ctrl-C traceback)."""
        self._buffer.clear()
        while self.port.in_waiting:
            self.port.read(self.port.in_waiting)
        self.port.reset_input_buffer()
