"""Serial ports by URL (pyserial's serial_for_url), read without busy-waiting, bytes counted.

Writes never block the harness: what the OS cannot take yet waits in our own buffer and goes out
while we read. A host that blocked in write while the board blocked writing its replies (a runner
with a big RX window on a pty holding a few KiB each way) would deadlock both.
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Any

from k210.host.errors import BadInputError, ToolFailure

POLL_S = 0.005  # read timeout for ports select() cannot watch (loop://, rfc2217://)


class Port:
    """A pyserial port plus the byte counts link utilisation is computed from."""

    def __init__(self, serial_port: Any, url: str, baud: int) -> None:
        self.serial = serial_port
        self.url = url
        self.baud = baud
        self.bytes_out = 0
        self.bytes_in = 0
        self.line_free = 0.0  # when the line will have carried everything written so far
        try:
            self._fd: int | None = serial_port.fileno()
        except (AttributeError, NotImplementedError, OSError, ValueError):
            self._fd = None
        # With a file descriptor to select() on, reads never block; otherwise poll briefly.
        serial_port.timeout = 0 if self._fd is not None else POLL_S
        self._socket: socket.socket | None = None
        sock = getattr(serial_port, "_socket", None)
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small frames
            self._socket = sock
        elif self._fd is not None:
            os.set_blocking(self._fd, False)
        self._out = bytearray()  # written by the harness, not yet taken by the OS

    def write(self, data: bytes) -> float:
        """Send bytes; returns when (time.monotonic) the last of them reaches the board."""
        self._out += data
        self._flush()
        self.bytes_out += len(data)
        self.line_free = max(self.line_free, time.monotonic()) + self.wire_seconds(len(data))
        return self.line_free

    def _flush(self) -> None:
        try:
            if self._fd is None:  # loop://, rfc2217://: pyserial's own (blocking) write
                self.serial.write(bytes(self._out))
                self._out.clear()
                return
            while self._out:
                if self._socket is not None:
                    n = self._socket.send(self._out)
                else:
                    n = os.write(self._fd, self._out)
                del self._out[:n]
        except BlockingIOError:
            pass  # the OS buffer is full: the rest goes out from read()
        except (OSError, ValueError) as exc:
            raise ToolFailure(f"lost the board on {self.url}: {exc}") from None

    def read(self, wait: float) -> bytes:
        """What has arrived, waiting up to `wait` seconds for the first byte (sending what is queued meanwhile)."""
        try:
            if self._fd is not None:
                deadline = time.monotonic() + max(0.0, wait)
                while True:
                    writing = [self._fd] if self._out else []
                    ready, writable, _ = select.select([self._fd], writing, [], max(0.0, deadline - time.monotonic()))
                    if writable:
                        self._flush()
                    if ready or time.monotonic() >= deadline:
                        break
                if not ready:
                    return b""
                data = self.serial.read(65536)
            else:
                data = self.serial.read(max(1, self.serial.in_waiting))
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            raise ToolFailure(f"lost the board on {self.url}: {exc}") from None
        self.bytes_in += len(data)
        return data

    def wire_seconds(self, nbytes: int) -> float:
        return nbytes * 10.0 / self.baud

    def close(self) -> None:
        try:
            self.serial.close()
        except Exception:
            pass


def open_port(url: str, baud: int) -> Port:
    """Open `url` ('/dev/ttyUSB0', 'socket://host:port', 'rfc2217://host:port', 'loop://'), one-line errors."""
    import serial

    try:
        serial_port = serial.serial_for_url(url, baudrate=baud, timeout=0)
    except (serial.SerialException, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"cannot open port {url}: {reason} (no board there?)") from None
    return Port(serial_port, url, baud)
