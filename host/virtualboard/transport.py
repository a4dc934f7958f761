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
import tty
from abc import ABC, abstractmethod

from k210.host.errors import BadInputError


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
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._server.bind((host, port))
        except OSError as exc:
            raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self._server.listen(1)
        self._server.setblocking(False)
        self.url = f"socket://{host}:{self._server.getsockname()[1]}"
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self.lost = 0

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
        return SocketTransport(host or "127.0.0.1", int(port))
    raise BadInputError(f"--port {spec}: expected 'pty' or socket://127.0.0.1:PORT")
