"""The run's journal: one JSON line per board result, appended and flushed as it arrives.

Line 1 (the header) binds the journal to its run: a run id, the kmodel's sha256, the data set, the
preprocessing spec's hash, split, seed and image count; `--resume` refuses a journal of another run.
Then `{"i": index, "us": micros, "board": name, "out": [tensor...]}` for each result and, now and
then, `{"stats": {...}}` with a segment's link figures so far.

Every line ends in `"sum"`: the first 16 hex digits of the SHA-256 of the run id and the line's
bytes before it. A line whose sum is wrong (flipped bits, a line from another run's journal, an edit)
is damaged: resuming drops it and runs its image again, and counts it. A line whose sum is right
but whose content makes no sense (an index out of range, a tensor the kmodel has no room for) was
not written by this program: that is bad input, exit 2 with the line number. A run that was killed
leaves at worst a torn last line, which resuming drops without counting it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k210.core.errors import BadInputError
from k210.firmware import k210wire as w

from .messages import Tensor

KIND = "k210-hil-journal"
VERSION = 2
FSYNC_EVERY_S = 1.0
SUM_HEX = 16
_SEALED = re.compile(rb'(\{.*),"sum":"([0-9a-f]{%d})"\}' % SUM_HEX, re.DOTALL)
_NUMPY_DTYPES = frozenset(range(11))  # what Tensor.to_numpy reads (bfloat16 is not among them)

Outputs = tuple[tuple[int, tuple[int, ...]], ...]  # the kmodel's output tensors, (dtype, shape)


@dataclass(frozen=True)
class BoardResult:
    index: int
    outputs: list[Tensor]
    micros: int
    board: str


def _digest(run_id: str, body: bytes) -> str:
    return hashlib.sha256(run_id.encode("utf-8") + b"\n" + body).hexdigest()[:SUM_HEX]


def seal(run_id: str, entry: dict[str, Any]) -> str:
    """The journal line of `entry`, its sum appended (also what a test uses to forge a well-formed line)."""
    body = json.dumps(entry, separators=(",", ":"))
    return f'{body[:-1]},"sum":"{_digest(run_id, body.encode("utf-8"))}"}}'


def _unseal(run_id: str, line: bytes) -> bytes | None:
    """The line without its sum, or None when the sum is missing or wrong."""
    match = _SEALED.fullmatch(line)
    if match is None:
        return None
    body = match.group(1) + b"}"
    return body if _digest(run_id, body) == match.group(2).decode("ascii") else None


def _tensor_to_json(t: Tensor) -> dict[str, Any]:
    return {"dtype": t.dtype, "shape": list(t.shape), "data": base64.b64encode(t.data).decode("ascii")}


class _Malformed(ValueError):
    """A line with a right sum and a content that makes no sense."""


def _tensor_from_json(d: Any, k: int, outputs: Outputs) -> Tensor:
    if not isinstance(d, dict) or set(d) != {"dtype", "shape", "data"}:
        raise _Malformed(f"output {k} is not a tensor (dtype, shape, data)")
    dtype, shape = d["dtype"], d["shape"]
    if type(dtype) is not int or dtype not in _NUMPY_DTYPES:
        raise _Malformed(f"output {k} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(n) is int and 0 <= n < 1 << 31 for n in shape):
        raise _Malformed(f"output {k} has a shape that is not a list of sizes: {shape!r}")
    if not isinstance(d["data"], str):
        raise _Malformed(f"output {k} has no base64 data")
    try:
        data = base64.b64decode(d["data"], validate=True)
    except (binascii.Error, ValueError):
        raise _Malformed(f"output {k}'s data is not base64") from None
    if len(data) != w.tensor_nbytes(dtype, shape):
        raise _Malformed(f"output {k} holds {len(data)} bytes, its shape {shape} of "
                         f"{w.DTYPE_NAMES[dtype]} takes {w.tensor_nbytes(dtype, shape)}")
    if outputs:
        want_dtype, want_shape = outputs[k]
        elements, want = _elements(shape), _elements(want_shape)
        # A board sends the declared dtype or float32 (PROTOCOL.md 3.3), the declared values either way.
        if dtype not in (want_dtype, w.DT_FLOAT32) or elements != want:
            raise _Malformed(f"output {k} is {w.DTYPE_NAMES[dtype]}{shape}, the kmodel's is "
                             f"{w.DTYPE_NAMES.get(want_dtype, want_dtype)}{list(want_shape)}")
    return Tensor(dtype, tuple(shape), data)


def _elements(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _result_from_json(entry: dict[str, Any], count: int | None, outputs: Outputs) -> BoardResult:
    if set(entry) != {"i", "us", "board", "out"}:
        raise _Malformed(f"a result needs the keys i, us, board, out (has {', '.join(sorted(entry)) or 'none'})")
    index, micros, board, out = entry["i"], entry["us"], entry["board"], entry["out"]
    if type(index) is not int or index < 0 or (count is not None and index >= count):
        raise _Malformed(f"image index {index!r} is not one of this run's (0 to {'?' if count is None else count - 1})")
    if type(micros) is not int or micros < 0:
        raise _Malformed(f"latency {micros!r} is not a number of microseconds")
    if not isinstance(board, str):
        raise _Malformed(f"board {board!r} is not a name")
    if not isinstance(out, list) or not out or (outputs and len(out) > len(outputs)):
        most = f"1 to {len(outputs)}" if outputs else "at least 1"
        raise _Malformed(f"{len(out) if isinstance(out, list) else 'no'} outputs, the kmodel has {most}")
    return BoardResult(index, [_tensor_from_json(t, k, outputs) for k, t in enumerate(out)], micros, board)


def _stats_from_json(entry: dict[str, Any]) -> dict[str, Any]:
    stats = entry["stats"]
    if set(entry) != {"stats"} or not isinstance(stats, dict) or type(stats.get("segment")) is not int \
            or not isinstance(stats.get("boards"), list) or not isinstance(stats.get("seconds"), (int, float)):
        raise _Malformed("a stats line needs segment, seconds and boards")
    return stats


class Journal:
    def __init__(self, path: Path, mode: str, run_id: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.run_id = run_id
        self.damaged_lines = 0  # complete lines resuming dropped (their images run again)
        self._file = open(path, mode, encoding="utf-8")  # noqa: SIM115 - open for the run's lifetime
        self._lock = threading.Lock()
        self._synced = time.monotonic()

    @classmethod
    def start(cls, path: str | os.PathLike[str], identity: dict[str, Any]) -> Journal:
        run_id = uuid.uuid4().hex
        journal = cls(Path(path), "w", run_id)
        journal._write({"journal": KIND, "version": VERSION, "run_id": run_id, **identity}, sync=True, key="")
        return journal

    @classmethod
    def resume(cls, path: str | os.PathLike[str], identity: dict[str, Any], outputs: Outputs = ()
               ) -> tuple[Journal, dict[int, BoardResult], list[dict[str, Any]]]:
        """Reopen a journal of the same run: its results, and the last stats of each earlier segment.
        Damaged lines are dropped (the journal is rewritten without them; see `damaged_lines`)."""
        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"--resume: no journal at {path}")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BadInputError(f"--resume: cannot read {path}: {exc.strerror}") from None
        lines = raw.split(b"\n")
        complete = lines[:-1]  # what follows the last newline is empty or a torn line
        if not complete:
            raise BadInputError(f"--resume: {path} is empty")
        header = cls._header(path, complete[0], identity)
        run_id = header["run_id"]
        count = identity.get("count")
        results: dict[int, BoardResult] = {}
        segments: dict[int, dict[str, Any]] = {}
        kept = [complete[0]]
        damaged = 0
        for number, line in enumerate(complete[1:], start=2):
            body = _unseal(run_id, line)
            if body is None:
                damaged += 1
                continue
            try:
                entry = json.loads(body.decode("utf-8"))
                if not isinstance(entry, dict):
                    raise _Malformed("not a JSON object")
                if "stats" in entry:
                    stats = _stats_from_json(entry)
                    segments[stats["segment"]] = stats
                else:
                    result = _result_from_json(entry, count, outputs)
                    if result.index in results and results[result.index] != result:
                        raise _Malformed(f"image {result.index} again, with other outputs")
                    results[result.index] = result
            except (_Malformed, ValueError) as exc:  # JSON and UTF-8 errors are ValueErrors too
                raise BadInputError(f"--resume: {path} line {number} is malformed: {exc}") from None
            kept.append(line)
        good = b"\n".join(kept) + b"\n"
        if good != raw:  # a torn tail or damaged lines: rewrite it so that appending starts clean
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(good)
                f.flush()
                os.fsync(f.fileno())  # the old journal goes only once the new one is on disk
            os.replace(tmp, path)
        journal = cls(path, "a", run_id)
        journal.damaged_lines = damaged
        return journal, results, [segments[k] for k in sorted(segments)]

    @staticmethod
    def _header(path: Path, line: bytes, identity: dict[str, Any]) -> dict[str, Any]:
        body = _unseal("", line)
        try:
            header = json.loads(body if body is not None else line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("journal") != KIND:
            raise BadInputError(f"--resume: {path} is not a k210 hil journal")
        if header.get("version") != VERSION:
            raise BadInputError(f"--resume: {path} is a v{header.get('version')} journal, this k210 writes "
                                f"v{VERSION}: rerun without --resume")
        if body is None or not isinstance(header.get("run_id"), str):
            raise BadInputError(f"--resume: {path} line 1 (its header) is damaged: rerun without --resume")
        for key, value in identity.items():
            if header.get(key) != value:
                raise BadInputError(f"--resume: {path} belongs to another run ({key} was {header.get(key)!r}, "
                                    f"now {value!r}); remove it or drop --resume")
        return header

    def record(self, result: BoardResult) -> None:
        self._write({"i": result.index, "us": result.micros, "board": result.board,
                     "out": [_tensor_to_json(t) for t in result.outputs]})

    def record_stats(self, stats: dict[str, Any]) -> None:
        self._write({"stats": stats}, sync=True)

    def _write(self, entry: dict[str, Any], sync: bool = False, key: str | None = None) -> None:
        line = seal(self.run_id if key is None else key, entry) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            now = time.monotonic()
            if sync or now - self._synced > FSYNC_EVERY_S:
                os.fsync(self._file.fileno())
                self._synced = now

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
