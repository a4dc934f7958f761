"""A MaixPy board's REPL for deploy tests: the real byte protocol, and the code deploy sends really runs.

`FakeMicroPythonBoard.feed(bytes) -> bytes` is the UART: it implements the friendly and raw REPL
states (Ctrl-A/B/C/D) and runs each raw-REPL program with CPython `exec`, but with MicroPython's
world in place of CPython's: only `uos`/`os`, `ubinascii`, `uhashlib` (digest() once, no
hexdigest, as on MaixPy), `machine` and `gc` can be imported, `open` and `uos` see only the
board's mounts (folders under `root`), and /flash has SPIFFS's 3 MiB. Sources they follow (sipeed/MaixPy-v1,
CanMV has the same files): uhashlib is components/micropython/port/src/moduhashlib_maixpy.c
(sha256 with update/digest, the hardware engine: digest() finalises it, so once), ubinascii is
MicroPython's extmod/modubinascii.c, /flash is vfs_spiffs.c, the REPL states are MicroPython's
lib/utils/pyexec.c. `corrupt` flips one bit in
a chosen write to a file, as a flaky UART or file system would.

Two transports: `FakeBoardPort` (in-process, pyserial-like) and `serve_over_tcp` (a socket:// URL
for pyserial's serial_for_url, as the CLI uses).
"""

from __future__ import annotations

import binascii
import builtins
import contextlib
import errno
import hashlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

BANNER = b'MicroPython v0.6.2-fake; Sipeed_M1 with kendryte-k210\r\nType "help()" for more information.\r\n'
INTERRUPTED = b'Traceback (most recent call last):\r\n  File "main.py", line 9, in <module>\r\nKeyboardInterrupt: \r\n'
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


class _Reset(BaseException):
    """machine.reset(): unwinds the program; the board reboots."""


class FakeMicroPythonBoard:
    def __init__(
        self,
        root: Path,
        mounts: tuple[str, ...] = ("flash",),
        *,
        capacity: dict[str, int] | None = None,
        corrupt: dict[str, int] | None = None,
        running_main: bool = True,
        alive: bool = True,
    ) -> None:
        self.root = root
        self.mounts = mounts
        for mount in mounts:
            (root / mount).mkdir(parents=True, exist_ok=True)
        self.capacity = {"flash": 3 * 1024 * 1024, "sd": 1 << 30, **(capacity or {})}
        self.corrupt = dict(corrupt or {})  # path prefix -> index of the write() call to damage
        self._write_counts: dict[str, int] = {}
        self.state = "running" if running_main else "friendly"
        self.alive = alive
        self.resets = 0
        self.programs: list[str] = []
        self._code = bytearray()
        self._globals: dict = {}
        self._stdout = io.StringIO()

    # ---- the UART ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        if not self.alive:
            return b""
        out = bytearray()
        for byte in data:
            out += self._byte(bytes([byte]))
        return bytes(out)

    def _byte(self, b: bytes) -> bytes:
        if self.state == "running":  # main.py owns the UART until Ctrl-C
            if b == b"\x03":
                self.state = "friendly"
                return INTERRUPTED + BANNER + b">>> "
            return b""
        if self.state == "friendly":
            if b == b"\x01":
                self.state, self._code = "raw", bytearray()
                return b"\r\n" + RAW_BANNER
            if b in (b"\r", b"\x03"):
                return b"\r\n>>> "
            return b
        # raw REPL
        if b == b"\x01":
            self._code = bytearray()
            return b"\r\n" + RAW_BANNER
        if b == b"\x02":
            self.state = "friendly"
            return b"\r\n" + BANNER + b">>> "
        if b == b"\x03":
            self._code = bytearray()
            return b""
        if b == b"\x04":
            if not self._code:
                return b"soft reboot\r\n" + RAW_BANNER
            code, self._code = self._code.decode("utf-8"), bytearray()
            return self._run(code)
        self._code += b
        return b""

    def _run(self, code: str) -> bytes:
        self.programs.append(code)
        stdout = self._stdout = io.StringIO()
        try:
            exec(compile(code, "<stdin>", "exec"), self._namespace())
            error = ""
        except _Reset:
            self.resets += 1
            self._globals = {}
            self.state = "running" if (self.root / "flash" / "main.py").exists() else "friendly"
            return b"OK" + stdout.getvalue().encode() + b"\r\nboot...\r\n" + BANNER
        except BaseException as exc:  # noqa: BLE001 - everything the program raises goes back as a traceback
            where = 'Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
            kind = "OSError" if isinstance(exc, OSError) else type(exc).__name__  # MicroPython has no subclasses
            error = f"{where}{kind}: {exc}\r\n"
        text = stdout.getvalue().replace("\n", "\r\n")
        return b"OK" + text.encode() + b"\x04" + error.encode() + b"\x04>"

    # ---- MicroPython's world -------------------------------------------------------------------
    def _namespace(self) -> dict:
        """The REPL's globals; they persist between programs, as on the board, until a reset.

        Functions keep the builtins they were defined with, so `print` writes to whatever the
        current program's output is rather than to a captured stream.
        """
        if "__builtins__" in self._globals:
            return self._globals
        modules = self._modules()

        def import_(name, globals=None, locals=None, fromlist=(), level=0):
            if name not in modules:
                raise ImportError(f"no module named '{name}'")
            return modules[name]

        sandbox = dict(vars(builtins))
        sandbox.update(
            __import__=import_,
            open=self._open,
            print=lambda *args, sep=" ", end="\n", **_: self._stdout.write(sep.join(map(str, args)) + end),
        )
        self._globals["__builtins__"] = sandbox
        return self._globals

    def _modules(self) -> dict:
        uos = SimpleNamespace(
            listdir=self._listdir, stat=self._stat, remove=lambda p: self._host(p).unlink(),
            rename=lambda a, b: self._rename(a, b), statvfs=self._statvfs, mkdir=lambda p: self._host(p).mkdir(),
        )  # fmt: skip
        ubinascii = SimpleNamespace(a2b_base64=binascii.a2b_base64, b2a_base64=binascii.b2a_base64,
                                    hexlify=binascii.hexlify, unhexlify=binascii.unhexlify)  # fmt: skip
        uhashlib = SimpleNamespace(sha256=_MaixPySha256)
        machine = SimpleNamespace(reset=self._reset)
        gc = SimpleNamespace(collect=lambda: None, mem_free=lambda: 400_000)
        return {"uos": uos, "os": uos, "ubinascii": ubinascii, "binascii": ubinascii, "uhashlib": uhashlib,
                "hashlib": uhashlib, "machine": machine, "gc": gc}  # fmt: skip

    def _reset(self) -> None:
        raise _Reset

    def _host(self, path: str) -> Path:
        parts = [p for p in str(path).split("/") if p]
        if not parts or parts[0] not in self.mounts or ".." in parts:
            raise OSError(errno.ENOENT, "ENOENT")
        return self.root.joinpath(*parts)

    def _mount_of(self, path: str) -> str:
        return [p for p in str(path).split("/") if p][0]

    def _listdir(self, path: str = "/") -> list[str]:
        if path in ("/", ""):
            return list(self.mounts)
        host = self._host(path)
        if not host.is_dir():
            raise OSError(errno.ENOENT, "ENOENT")
        return sorted(p.name for p in host.iterdir())

    def _stat(self, path: str) -> tuple:
        host = self._host(path)
        if not host.exists():
            raise OSError(errno.ENOENT, "ENOENT")
        size = 0 if host.is_dir() else host.stat().st_size
        return (0x4000 if host.is_dir() else 0x8000, 0, 0, 0, 0, 0, size, 0, 0, 0)

    def _used(self, mount: str) -> int:
        return sum(p.stat().st_size for p in (self.root / mount).rglob("*") if p.is_file())

    def _statvfs(self, path: str) -> tuple:
        mount = self._mount_of(path)
        self._host(path)
        free_blocks = max(0, self.capacity[mount] - self._used(mount)) // 4096
        return (4096, 4096, self.capacity[mount] // 4096, free_blocks, free_blocks, 0, 0, 0, 0, 255)

    def _rename(self, old: str, new: str) -> None:
        target = self._host(new)
        if target.exists():
            raise OSError(errno.EEXIST, "EEXIST")  # SPIFFS will not rename over a file
        self._host(old).rename(target)

    def _open(self, path: str, mode: str = "r"):
        host = self._host(path)
        if "w" in mode or "a" in mode:
            return _BoardFile(self, path, open(host, mode.replace("t", "")))  # noqa: SIM115
        if not host.is_file():
            raise OSError(errno.ENOENT, "ENOENT")
        return open(host, mode)  # noqa: SIM115

    def _damage(self, path: str, data: bytes) -> bytes:
        count = self._write_counts.get(path, 0)
        self._write_counts[path] = count + 1
        for prefix, index in self.corrupt.items():
            if path.startswith(prefix) and index == count and data:
                damaged = bytearray(data)
                damaged[len(damaged) // 2] ^= 0x10
                return bytes(damaged)
        return data


class _BoardFile:
    def __init__(self, board: FakeMicroPythonBoard, path: str, handle) -> None:
        self._board, self._path, self._handle = board, path, handle

    def write(self, data) -> int:
        data = self._board._damage(self._path, bytes(data))
        mount = self._board._mount_of(self._path)
        self._handle.flush()
        if self._board._used(mount) + len(data) > self._board.capacity[mount]:
            raise OSError(errno.ENOSPC, "ENOSPC")
        return self._handle.write(data)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _MaixPySha256:
    """uhashlib.sha256 as MaixPy has it: digest() finalises (a second call is an error here), no hexdigest."""

    def __init__(self, data: bytes = b"") -> None:
        self._hash = hashlib.sha256(bytes(data))
        self._done = False

    def update(self, data) -> None:
        if self._done:
            raise ValueError("hash already finalised")
        self._hash.update(bytes(data))

    def digest(self) -> bytes:
        if self._done:
            raise ValueError("digest() called twice: MaixPy returns garbage here")
        self._done = True
        return self._hash.digest()


class FakeBoardPort:
    """In-process pyserial look-alike wired to a FakeMicroPythonBoard."""

    def __init__(self, board: FakeMicroPythonBoard, timeout: float = 0.05) -> None:
        self.board = board
        self.timeout = timeout
        self.is_open = True
        self.dtr = self.rts = False
        self._pending = bytearray()
        self.sent = bytearray()

    def write(self, data: bytes) -> int:
        self.sent += data
        self._pending += self.board.feed(bytes(data))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if not self._pending:
            time.sleep(min(self.timeout or 0.0, 0.01))
            return b""
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    @property
    def in_waiting(self) -> int:
        return len(self._pending)

    def reset_input_buffer(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        self.is_open = False


@contextlib.contextmanager
def serve_over_tcp(board: FakeMicroPythonBoard) -> Iterator[str]:
    """Serve the board's UART on 127.0.0.1; yields a socket:// URL for serial_for_url."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(0.05)
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                reply = board.feed(data)
                if reply:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, name="fake-board-tcp", daemon=True)
    thread.start()
    try:
        yield f"socket://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()
        thread.join(timeout=5)
