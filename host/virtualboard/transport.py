"""The host's end of the virtual board's UART: a pseudo-terminal or a TCP socket.

Either way the board side reads whatever the host wrote (non-blocking) and writes bytes the host
will read. Nothing here paces or corrupts bytes; wire.py does that.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
import tty
from abc import ABC, abstractmethod

from k210.core.errors import BadInputError


class Transport(ABC):
    """One end of the line, seen from the board."""

    url: str

    @abstractmethod
    def wait_readable(self, timeout: float | None) -> bool:
        """True when read() would return bytes (or the wait was interrupted by close())."""

    @abstractmethod
    def read(self, limit: int) -> bytes:
        """Up to `limit` bytes the host has written, without blocking (b"" if none)."""

    @abstractmethod
    def write(self, data: bytes) -> int:
        """Hand bytes to the host; bytes the host has no room for are lost, as on a real line."""

    @abstractmethod
    def close(self) -> None: ...

    def vanish(self, seconds: float) -> None:
        """The port disappears for `seconds`, then comes back at the same address (a close fault)."""
        raise BadInputError("a close fault needs a socket board (--port socket://127.0.0.1:0): "
                            "a pseudo-terminal would come back under another name")


class PtyTransport(Transport):
    """A pseudo-terminal pair: the host opens `url` (/dev/pts/N) with pyserial like a USB adapter."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        # Keep our own slave fd open: then the host may open and close the device freely
        # without the master seeing EIO, as a USB-serial adapter stays plugged in.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.url = os.ttyname(self._slave)
        self.lost = 0

    def wait_readable(self, timeout: float | None) -> bool:
        ready, _, _ = select.select([self._master], [], [], timeout)
        return bool(ready)

    def read(self, limit: int) -> bytes:
        try:
            return os.read(self._master, limit)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                self.lost += len(view)  # the host is not reading and its tty queue is full
                break
        return len(data)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class SocketTransport(Transport):
    """A TCP server on 127.0.0.1; pyserial reaches it as socket://127.0.0.1:PORT.

    One host at a time: a new connection replaces the old one, like re-plugging a cable. Bytes the
    board sends while nobody is connected are lost.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not 0 <= port <= 65535:
            raise BadInputError(f"--port socket://{host}:{port}: a TCP port is 0 to 65535")
        self._server = self._listen(host, port)
        self._address = self._server.getsockname()
        self.url = f"socket://{host}:{self._address[1]}"
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._back_at = 0.0  # while vanished: when the port is back
        self.lost = 0

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((host, port))
        except (OSError, OverflowError) as exc:
            server.close()
            raise BadInputError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
        server.listen(1)
        server.setblocking(False)
        return server

    def vanish(self, seconds: float) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._back_at = time.monotonic() + seconds
        if client is not None:
            client.close()
        self._server.close()

    def _come_back(self, timeout: float | None) -> bool:
        """While vanished: sleep (at most `timeout`); True once the port listens again."""
        left = self._back_at - time.monotonic()
        if left > 0:
            time.sleep(left if timeout is None else min(timeout, left))
            return False
        try:
            self._server = self._listen(*self._address)
        except BadInputError:  # the port is still in TIME_WAIT or taken: try again shortly
            time.sleep(0.05)
            return False
        self._back_at = 0.0
        return True

    def _accept(self) -> None:
        try:
            client, _ = self._server.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = client

    def wait_readable(self, timeout: float | None) -> bool:
        if self._back_at and not self._come_back(timeout):
            return False
        watched = [self._server] + ([self._client] if self._client is not None else [])
        ready, _, _ = select.select(watched, [], [], timeout)
        if self._server in ready:
            self._accept()
        return self._client is not None and self._client in ready

    def read(self, limit: int) -> bytes:
        client = self._client
        if client is None:
            return b""
        try:
            data = client.recv(limit)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            self._drop_client(client)
        return data

    def write(self, data: bytes) -> int:
        client = self._client
        if client is None:
            self.lost += len(data)
            return len(data)
        try:
            client.sendall(data)
        except BlockingIOError:
            self.lost += len(data)
        except OSError:
            self._drop_client(client)
        return len(data)

    def _drop_client(self, client: socket.socket) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
        client.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._server.close()


def open_transport(spec: str) -> Transport:
    """`pty` or `socket://127.0.0.1:PORT` (PORT 0: any free port)."""
    if spec == "pty":
        return PtyTransport()
    if spec.startswith("socket://"):
        hostport = spec[len("socket://"):]
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            raise BadInputError(f"--port {spec}: expected socket://HOST:PORT")
        if not 0 <= int(port) <= 65535:
            raise BadInputError(f"--port {spec}: a TCP port is 0 to 65535")
        return SocketTransport(host or "127.0.0.1", int(port))
    raise BadInputError(f"--port {spec}: expected 'pty' or socket://127.0.0.1:PORT")
