"""Seeded link and board faults: corrupted, dropped and duplicated bytes, stalls, board resets.

A spec is `key=value` pairs separated by commas, e.g. `corrupt=1e-3,drop=1e-3,dup=1e-4,reset=500`:

    corrupt=P   probability per byte that it arrives with random bits flipped
    drop=P      probability per byte that it never arrives
    dup=P       probability per byte that it arrives twice
    stall=P     probability per byte that the line goes quiet before it, for stall_ms
    stall_ms=MS length of a stall (default 20)
    reset=N     the board resets on average once every N frames it receives (0: never)
    dir=D       which way byte faults hit: both (default), rx (host to board) or tx (board to host)

Resets are counted on frame delimiters the board receives, so they land anywhere: mid-upload,
between a request and its result, or while the board computes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from k210.host.errors import BadInputError

_DIRECTIONS = ("both", "rx", "tx")


@dataclass(frozen=True)
class FaultSpec:
    corrupt: float = 0.0
    drop: float = 0.0
    dup: float = 0.0
    stall: float = 0.0
    stall_ms: float = 20.0
    reset: float = 0.0
    dir: str = "both"

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        if not text or text.strip() in ("", "none"):
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict[str, float | str] = {}
        for item in text.split(","):
            key, sep, value = item.strip().partition("=")
            if not sep or key not in known:
                raise BadInputError(f"--faults: expected key=value with key one of {', '.join(sorted(known))} "
                                    f"(got '{item.strip()}')")
            if key == "dir":
                if value not in _DIRECTIONS:
                    raise BadInputError(f"--faults: dir must be one of {', '.join(_DIRECTIONS)} (got '{value}')")
                values[key] = value
                continue
            try:
                number = float(value)
            except ValueError:
                raise BadInputError(f"--faults: {key} needs a number (got '{value}')") from None
            if number < 0 or (key in ("corrupt", "drop", "dup", "stall") and number > 1):
                raise BadInputError(f"--faults: {key}={value} is out of range")
            values[key] = number
        return cls(**values)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return any((self.corrupt, self.drop, self.dup, self.stall, self.reset))

    def to_text(self) -> str:
        default = FaultSpec()
        parts = [f"{f.name}={getattr(self, f.name):g}" if f.name != "dir" else f"dir={self.dir}"
                 for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]
        return ",".join(parts) or "none"


@dataclass
class FaultCounts:
    corrupted: int = 0
    dropped: int = 0
    duplicated: int = 0
    stalls: int = 0
    resets: int = 0


@dataclass
class Faulted:
    """What a stretch of bytes became on the line."""

    data: bytes
    stalls: list[tuple[int, float]]  # (index in data before which the line stalls, seconds)
    resets: list[int]  # indices in data of delimiters after which the board resets


class FaultInjector:
    """Applies a FaultSpec to the bytes crossing the line, reproducibly for a given seed."""

    def __init__(self, spec: FaultSpec, seed: int = 0) -> None:
        self.spec = spec
        streams = np.random.SeedSequence(seed).spawn(2)
        self._rng = {"rx": np.random.default_rng(streams[0]), "tx": np.random.default_rng(streams[1])}
        self.counts = FaultCounts()

    def apply(self, data: bytes, direction: str) -> Faulted:
        spec = self.spec
        if not data or not spec.active:
            return Faulted(data, [], [])
        rng = self._rng[direction]
        byte_faults = spec.dir in ("both", direction)
        n = len(data)
        if byte_faults and (spec.corrupt or spec.drop or spec.dup or spec.stall):
            draws = rng.random((4, n))
            corrupt = np.flatnonzero(draws[0] < spec.corrupt)
            drop = set(np.flatnonzero(draws[1] < spec.drop).tolist())
            dup = set(np.flatnonzero(draws[2] < spec.dup).tolist())
            stall = set(np.flatnonzero(draws[3] < spec.stall).tolist())
        else:
            corrupt, drop, dup, stall = np.empty(0, np.int64), set(), set(), set()
        if len(corrupt) or drop or dup or stall:
            buf = bytearray(data)
            for i in corrupt.tolist():
                buf[i] ^= int(rng.integers(1, 256))  # never 0: the byte really changes
            self.counts.corrupted += len(corrupt)
            out = bytearray()
            stalls: list[tuple[int, float]] = []
            done = 0
            for i in sorted(drop | dup | stall):  # copy the clean stretches in one go
                out += buf[done:i]
                done = i + 1
                if i in stall:
                    stalls.append((len(out), spec.stall_ms / 1000.0))
                    self.counts.stalls += 1
                if i in drop:
                    self.counts.dropped += 1
                    continue
                out.append(buf[i])
                if i in dup:
                    out.append(buf[i])
                    self.counts.duplicated += 1
            out += buf[done:]
            data = bytes(out)
        else:
            stalls = []
        resets: list[int] = []
        if direction == "rx" and spec.reset > 0 and data:
            delimiters = np.flatnonzero(np.frombuffer(data, np.uint8) == 0)
            if len(delimiters):
                hits = delimiters[rng.random(len(delimiters)) < 1.0 / spec.reset]
                resets = hits.tolist()
                self.counts.resets += len(resets)
        return Faulted(data, stalls, resets)
