"""Serial ports by URL (pyserial's serial_for_url), read without busy-waiting, bytes counted.

A port that vanishes (a USB-serial adapter unplugged or reset with its board, a TCP peer that
closes) is reopened at the same URL or device path, again and again with backoff, for up to
`patience` seconds; bytes in flight meanwhile are lost, which the session's timeouts recover.

Writes never block the harness: what the OS cannot take yet waits in our own buffer and goes out
while we read. A host that blocked in write while the board blocked writing its replies (a runner
with a big RX window on a pty holding a few KiB each way) would deadlock both.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from k210.core.errors import BadInputError, ToolFailure

POLL_S = 0.005  # read timeout for ports select() cannot watch (loop://, rfc2217://)
PATIENCE_S = 15.0  # how long a vanished port may stay away
REOPEN_FIRST_S = 0.05  # first pause before reopening; doubles up to REOPEN_MAX_S
REOPEN_MAX_S = 1.0

log = logging.getLogger("k210.hil")


class Port:
    """A pyserial port plus the byte counts link utilisation is computed from."""

    def __init__(self, serial_port: Any, url: str, baud: int, *, reopen: Callable[[], Any] | None = None,
                 patience: float = PATIENCE_S, use_fd: bool = True) -> None:
        self.url = url
        self.baud = baud
        self.bytes_out = 0
        self.bytes_in = 0
        self.line_free = 0.0  # when the line will have carried everything written so far
        self._reopen = reopen
        self.patience = patience
        self.reopens = 0
        self.reopen_waited_s = 0.0
        self.reopen_tries = 0  # every try to reopen it, those that failed included
        self._use_fd = use_fd  # False: only pyserial's read/write (wrappers that damage frames see every byte)
        self._attach(serial_port)

    def _attach(self, serial_port: Any) -> None:
        self.serial = serial_port
        try:
            self._fd: int | None = serial_port.fileno() if self._use_fd else None
        except (AttributeError, NotImplementedError, OSError, ValueError):
            self._fd = None
        # With a file descriptor to select() on, reads never block; otherwise poll briefly.
        serial_port.timeout = 0 if self._fd is not None else POLL_S
        self._socket: socket.socket | None = None
        sock = getattr(serial_port, "_socket", None) if self._use_fd else None
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
            self._come_back(exc)

    def _come_back(self, exc: BaseException) -> None:
        """The port is gone: reopen it (same URL) until it is back or `patience` runs out."""
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.close()
        self._out.clear()  # lost with the line
        if self._reopen is None or self.patience <= 0:
            raise ToolFailure(f"lost the board on {self.url}: {why}") from None
        # Said at INFO: a port that comes back is said once below, one that does not by the run's one error line.
        log.info("lost %s (%s): reopening it for up to %g s", self.url, why, self.patience)
        started = time.monotonic()
        pause = REOPEN_FIRST_S
        tries = 0
        while True:
            time.sleep(pause)
            tries += 1
            self.reopen_tries += 1
            try:
                serial_port = self._reopen()
                break
            except (OSError, ValueError) as again:
                why = str(again).splitlines()[0] if str(again) else type(again).__name__
            if time.monotonic() - started >= self.patience:
                raise ToolFailure(f"lost the board on {self.url}: not back after {time.monotonic() - started:.1f} s "
                                  f"({tries} tries to reopen it; last: {why})") from None
            pause = min(REOPEN_MAX_S, pause * 2)
        waited = time.monotonic() - started
        self.reopens += 1
        self.reopen_waited_s += waited
        log.warning("%s is back after %.1f s (%d tries to reopen it)", self.url, waited, tries)
        self._attach(serial_port)

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
                if self._socket is not None:  # rfc2217://: pyserial's own thread reads the socket
                    self._quickack()
                data = self.serial.read(max(1, self.serial.in_waiting))
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            self._come_back(exc)
            return b""
        self.bytes_in += len(data)
        return data

    def _quickack(self) -> None:
        """ACK every segment at once. ser2net sends RFC 2217 with Nagle's algorithm, so the second part of a
        reply waits for our ACK of the first, which Linux delays up to 40 ms (a HELLO's round trip through
        ser2net: 48 ms, 5 ms with this). Quick-ACK mode lapses by itself: it is set again before each read."""
        try:
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # type: ignore[union-attr]
        except (OSError, AttributeError):  # not Linux, or the socket closed meanwhile
            pass

    def wire_seconds(self, nbytes: int) -> float:
        return nbytes * 10.0 / self.baud

    def close(self) -> None:
        try:
            self.serial.close()
        except Exception:
            pass


def open_port(url: str, baud: int, patience: float = PATIENCE_S) -> Port:
    """Open `url` ('/dev/ttyUSB0', 'socket://host:port', 'rfc2217://host:port', 'loop://'), one-line errors.
    If it vanishes later, it is reopened at the same URL for up to `patience` seconds."""
    import serial

    def reopen() -> Any:
        return serial.serial_for_url(url, baudrate=baud, timeout=0)

    try:
        serial_port = reopen()
    except (serial.SerialException, ValueError, OSError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"cannot open port {url}: {reason} (no board there?)") from None
    return Port(serial_port, url, baud, reopen=None if url.startswith("loop://") else reopen, patience=patience)
