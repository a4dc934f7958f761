"""The run's journal: one JSON line per board result, appended and flushed as it arrives.

Line 1 says which run it belongs to (kmodel hash, dataset, split, images); `--resume` refuses a
journal of another run. Then `{"i": index, "us": micros, "board": name, "out": [tensor...]}` for
each result and, now and then, `{"stats": {...}}` with a segment's link figures so far. A run that
was killed leaves at worst a torn last line, which resuming drops.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k210.core.errors import BadInputError

from .messages import Tensor

KIND = "k210-hil-journal"
VERSION = 1
FSYNC_EVERY_S = 1.0


@dataclass(frozen=True)
class BoardResult:
    index: int
    outputs: list[Tensor]
    micros: int
    board: str


def _tensor_to_json(t: Tensor) -> dict[str, Any]:
    return {"dtype": t.dtype, "shape": list(t.shape), "data": base64.b64encode(t.data).decode("ascii")}


def _tensor_from_json(d: dict[str, Any]) -> Tensor:
    return Tensor(int(d["dtype"]), tuple(d["shape"]), base64.b64decode(d["data"]))


class Journal:
    def __init__(self, path: Path, mode: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, mode, encoding="utf-8")  # noqa: SIM115 - open for the run's lifetime
        self._lock = threading.Lock()
        self._synced = time.monotonic()

    @classmethod
    def start(cls, path: str | os.PathLike[str], identity: dict[str, Any]) -> Journal:
        journal = cls(Path(path), "w")
        journal._write({"journal": KIND, "version": VERSION, **identity}, sync=True)
        return journal

    @classmethod
    def resume(cls, path: str | os.PathLike[str], identity: dict[str, Any]
               ) -> tuple[Journal, dict[int, BoardResult], list[dict[str, Any]]]:
        """Reopen a journal of the same run: its results, and the last stats of each earlier segment."""
        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"--resume: no journal at {path}")
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        complete = lines[:-1]  # what follows the last newline is empty or a torn line
        if not complete:
            raise BadInputError(f"--resume: {path} is empty")
        try:
            header = json.loads(complete[0])
        except ValueError:
            raise BadInputError(f"--resume: {path} is not a k210 hil journal") from None
        if header.get("journal") != KIND:
            raise BadInputError(f"--resume: {path} is not a k210 hil journal")
        for key, value in identity.items():
            if header.get(key) != value:
                raise BadInputError(f"--resume: {path} belongs to another run ({key} was {header.get(key)!r}, "
                                    f"now {value!r}); remove it or drop --resume")
        results: dict[int, BoardResult] = {}
        segments: dict[int, dict[str, Any]] = {}
        for number, line in enumerate(complete[1:], start=2):
            try:
                entry = json.loads(line)
            except ValueError:
                raise BadInputError(f"--resume: {path} line {number} is damaged") from None
            if "stats" in entry:
                segments[int(entry["stats"]["segment"])] = entry["stats"]
            else:
                results[int(entry["i"])] = BoardResult(int(entry["i"]), [_tensor_from_json(t) for t in entry["out"]],
                                                       int(entry["us"]), str(entry.get("board", "")))
        # Drop a torn last line so that appending starts on a fresh line.
        good = len(("\n".join(complete) + "\n").encode("utf-8"))
        if good != path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(good)
        return cls(path, "a"), results, [segments[k] for k in sorted(segments)]

    def record(self, result: BoardResult) -> None:
        self._write({"i": result.index, "us": result.micros, "board": result.board,
                     "out": [_tensor_to_json(t) for t in result.outputs]})

    def record_stats(self, stats: dict[str, Any]) -> None:
        self._write({"stats": stats}, sync=True)

    def _write(self, entry: dict[str, Any], sync: bool = False) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
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
