"""Files on a MaixPy/CanMV board, through the raw REPL: write in base64 chunks, verify by sha256, rename.

Everything sent here must run on MicroPython 1.9 (MaixPy-v1): no f-strings, only the u-modules.
Files are verified piece by piece (1 MiB each) because MaixPy's hardware SHA-256 cannot hash
more than about 3.9 MiB in one go (MaixPy-v1 #352), and `digest()` may be called once per object.
"""

from __future__ import annotations

import ast
import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DeployFailed
from .rawrepl import RawRepl, RemoteError

HASH_PIECE = 1 << 20
WRITE_BLOCK = 1024  # bytes per a2b_base64() call
BLOCKS_PER_EXEC = 4  # about 5.5 KiB of code per round trip
TEMP_SUFFIX = ".k210tmp"

_HELPERS = """\
import uos, ubinascii, uhashlib
def _k210_sha(p, piece):
    f = open(p, 'rb')
    out = []
    try:
        while True:
            h = uhashlib.sha256()
            n = 0
            while n < piece:
                b = f.read(min(4096, piece - n))
                if not b:
                    break
                h.update(b)
                n += len(b)
            if n == 0:
                break
            out.append(ubinascii.hexlify(h.digest()).decode())
            if n < piece:
                break
    finally:
        f.close()
    print('K210SHA', uos.stat(p)[6], ' '.join(out))
def _k210_df(d):
    try:
        uos.listdir(d)
    except OSError:
        print('K210NODIR')
        return
    try:
        s = uos.statvfs(d)
        print('K210FREE', s[0] * s[4])
    except Exception:
        print('K210FREE', -1)
def _k210_ls(d):
    print('K210LS', repr([(n, uos.stat(d + '/' + n)[6]) for n in uos.listdir(d)]))
def _k210_swap(tmp, dst):
    try:
        uos.remove(dst)
    except OSError:
        pass
    uos.rename(tmp, dst)
def _k210_rm(p):
    try:
        uos.remove(p)
    except OSError:
        pass
"""


def piece_hashes(data: bytes) -> list[str]:
    """What _k210_sha prints for `data`: one sha256 hex digest per 1 MiB piece."""
    return [hashlib.sha256(data[i : i + HASH_PIECE]).hexdigest() for i in range(0, len(data), HASH_PIECE)]


@dataclass
class VerifiedFile:
    remote: str
    size: int
    sha256: str  # of the whole file, computed on the host


class BoardFiles:
    def __init__(self, repl: RawRepl) -> None:
        self.repl = repl
        self._ready = False

    def _exec(self, code: str, timeout: float | None = None) -> str:
        if not self._ready:
            self.repl.exec(_HELPERS)
            self._ready = True
        return self.repl.exec(code, timeout)

    def free_bytes(self, directory: str) -> int | None:
        """Free bytes in `directory`'s file system (None if the firmware cannot tell)."""
        out = self._exec(f"_k210_df({directory!r})")
        if "K210NODIR" in out:
            hint = " (is an SD card inserted and mounted?)" if directory.startswith("/sd") else ""
            raise DeployFailed(f"{directory} does not exist on the board{hint}")
        free = int(_tagged(out, "K210FREE")[0])
        return None if free < 0 else free

    def has_directory(self, directory: str) -> bool:
        """Whether `directory` exists (/sd: whether an SD card is in and mounted)."""
        return "K210NODIR" not in self._exec(f"_k210_df({directory!r})")

    def listing(self, directory: str) -> dict[str, int]:
        out = self._exec(f"_k210_ls({directory!r})")
        return dict(ast.literal_eval(_tagged_line(out, "K210LS")))

    def remote_hashes(self, path: str, size_hint: int = 0) -> tuple[int, list[str]]:
        out = self._exec(f"_k210_sha({path!r}, {HASH_PIECE})", timeout=self.repl.timeout + size_hint / 50_000)
        fields = _tagged(out, "K210SHA")
        return int(fields[0]), fields[1:]

    def put(self, data: bytes, remote: str, progress: Callable[[int], None] | None = None) -> VerifiedFile:
        """Write `data` to `remote` via a temp file, check its hash on the board, then move it in place.

        On any failure the temp file is removed and whatever was at `remote` before is left alone.
        """
        temp = remote + TEMP_SUFFIX
        try:
            self._exec(f"_k210_f = open({temp!r}, 'wb')\n_k210_n = 0")
            step = WRITE_BLOCK * BLOCKS_PER_EXEC
            for start in range(0, len(data), step):
                lines = [
                    f"_k210_n += _k210_f.write(ubinascii.a2b_base64({base64.b64encode(block).decode()!r}))"
                    for block in _blocks(data[start : start + step], WRITE_BLOCK)
                ]
                self._exec("\n".join(lines))
                if progress is not None:
                    progress(min(step, len(data) - start))
            written = int(self._exec("_k210_f.close()\nprint(_k210_n)").split()[-1])
            if written != len(data):
                raise DeployFailed(f"{remote}: the board wrote {written} of {len(data)} bytes (file system full?)")
            size, hashes = self.remote_hashes(temp, len(data))
            expected = piece_hashes(data)
            if size != len(data) or hashes != expected:
                raise DeployFailed(_mismatch(remote, size, hashes, len(data), expected))
            self._exec(f"_k210_swap({temp!r}, {remote!r})")
        except RemoteError as exc:
            self._cleanup(temp)
            raise DeployFailed(f"writing {remote} failed on the board: {exc.exception}") from None
        except DeployFailed:
            self._cleanup(temp)
            raise
        return VerifiedFile(remote, len(data), hashlib.sha256(data).hexdigest())

    def reset(self) -> None:
        self.repl.exec_and_forget("import machine\nmachine.reset()")

    def _cleanup(self, temp: str) -> None:
        try:
            self._exec(f"try:\n    _k210_f.close()\nexcept Exception:\n    pass\n_k210_rm({temp!r})")
        except DeployFailed:
            pass  # the board is gone; the message that brought us here says more


def _mismatch(remote: str, size: int, hashes: list[str], expected_size: int, expected: list[str]) -> str:
    differing = [i for i in range(max(len(hashes), len(expected))) if hashes[i : i + 1] != expected[i : i + 1]]
    first = differing[0]
    board = hashes[first][:16] if first < len(hashes) else "-"
    wanted = expected[first][:16] if first < len(expected) else "-"
    return (
        f"{remote} failed its hash check after writing: the board holds {size} bytes, expected {expected_size}; "
        f"{len(differing)} of {max(len(expected), 1)} MiB piece(s) differ (sha256 {board}... on the board, "
        f"{wanted}... expected); the previous {remote} is untouched, deploy again"
    )


def _blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _tagged_line(output: str, tag: str) -> str:
    """The rest of the line the helper printed after `tag`; a clear error if the board said something else."""
    for line in output.splitlines():
        if line.startswith(tag):
            return line[len(tag) :].strip()
    raise DeployFailed(f"unexpected answer from the board: {output.strip()[:120]!r}")


def _tagged(output: str, tag: str) -> list[str]:
    return _tagged_line(output, tag).split()
