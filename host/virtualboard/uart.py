"""Stand-in for MaixPy's `machine` module: UART on the virtual line, and reset().

MaixPy's UART keeps received bytes in a ring of `read_buf_len` bytes filled by an interrupt; when
the ring is full, further bytes are dropped (the K210 has no CTS to hold the sender back).
`read(n)`/`readinto(buf)` wait up to `timeout` ms for the first byte and then return what the ring
holds, possibly fewer bytes than asked for, or None when nothing came. `write` blocks until the
bytes are on the line.
"""

from __future__ import annotations

import sys
import time
import types
from typing import Any, Protocol

from .fpioa import FpioaManager
from .wire import Line

MAX_BAUD = 0x500000  # MaixPy refuses faster rates
READ_BATCH_S = 0.0005  # after the first byte is due, let a few more arrive before returning


class BoardReboot(BaseException):  # noqa: N818 - not an error: the board starts over, as machine.reset() does
    """machine.reset() or a reset fault: the board boots main.py again."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class RxRing:
    """The UART driver's receive ring: fixed size, drops what does not fit."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = bytearray()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buf)

    def push(self, data: bytes) -> None:
        room = self.size - len(self._buf)
        if len(data) > room:
            self.dropped += len(data) - room
            data = data[:room]
        self._buf += data

    def pop(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class UartBoard(Protocol):
    """What machine.UART uses of the virtual board (VirtualBoard is one)."""

    line: Line
    fpioa: FpioaManager
    uart: Any  # the UART the firmware opened, once it has
    board_id: int


def make_machine(board: UartBoard) -> types.ModuleType:
    """A fresh `machine` module for one boot of `board`."""

    class UART:
        UART1 = 1
        UART2 = 2
        UART3 = 3
        UARTHS = 0

        def __init__(self, uart: int, baudrate: int = 115200, bits: int = 8, parity: Any = None, stop: int = 1,
                     timeout: int = 1000, read_buf_len: int = 4096, **_: Any) -> None:
            if uart not in (UART.UART1, UART.UART2, UART.UART3, UART.UARTHS):
                raise ValueError("[MAIXPY]UART: uart id error")
            if not 0 < baudrate <= MAX_BAUD:
                raise ValueError("[MAIXPY]UART: baudrate too large")
            if bits not in (5, 6, 7, 8) or stop not in (1, 1.5, 2) or parity not in (None, 0, 1):
                raise ValueError("[MAIXPY]UART: bits/parity/stop error")
            if read_buf_len <= 0:
                raise ValueError("[MAIXPY]UART: read_buf_len must be > 0")
            self.timeout_s = timeout / 1000.0
            self.ring = RxRing(read_buf_len)
            self._line = board.line
            # Only a UART whose RX and TX functions are on pins reaches the USB-serial adapter.
            self._connected = uart == UART.UARTHS or board.fpioa.uart_routed(uart)
            if not self._connected:
                print(f"virtual board: UART{uart} opened without fm.register() of its TX/RX pins: "
                      "nothing reaches the host", file=sys.stderr, flush=True)
            self._line.set_baud(baudrate)
            self._line.discard_arrived()
            board.uart = self

        def _pull(self) -> None:
            data, reset = self._line.take(time.monotonic())
            if self._connected:
                self.ring.push(data)
            if reset:
                raise BoardReboot("reset fault")

        def _wait_first_byte(self) -> bool:
            deadline = time.monotonic() + self.timeout_s
            while True:
                self._pull()
                if self.ring:
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                due = self._line.next_arrival()
                if due is None:
                    self._line.wait_for_bytes(deadline - now)
                else:
                    time.sleep(max(0.0, min(deadline, due + READ_BATCH_S) - now))

        def any(self) -> int:
            self._pull()
            return len(self.ring)

        def read(self, nbytes: int = -1) -> bytes | None:
            if not self._wait_first_byte():
                return None
            return self.ring.pop(len(self.ring) if nbytes is None or nbytes < 0 else nbytes)

        def readinto(self, buf: Any, nbytes: int = -1) -> int | None:
            if not self._wait_first_byte():
                return None
            n = len(buf) if nbytes is None or nbytes < 0 else min(nbytes, len(buf))
            data = self.ring.pop(n)
            buf[: len(data)] = data
            return len(data)

        def readline(self) -> bytes | None:
            if not self._wait_first_byte():
                return None
            line = bytearray()
            while True:
                byte = self.ring.pop(1)
                if not byte:
                    if not self._wait_first_byte():
                        return bytes(line)
                    continue
                line += byte
                if byte == b"\n":
                    return bytes(line)

        def write(self, buf: Any) -> int:
            if self._line.reset_due(time.monotonic()):
                raise BoardReboot("reset fault")
            data = buf.encode() if isinstance(buf, str) else bytes(buf)  # MicroPython takes str too
            if self._connected:
                self._line.transmit(data)
            return len(data)

        def deinit(self) -> None:
            self._connected = False

    def reset() -> None:
        raise BoardReboot("machine.reset()")

    def unique_id() -> bytes:
        return b"virtual-k210-" + board.board_id.to_bytes(4, "little")

    def freq() -> int:
        return 400_000_000

    module = types.ModuleType("machine")
    module.__dict__.update(UART=UART, reset=reset, unique_id=unique_id, freq=freq, BoardReboot=BoardReboot)
    return module
