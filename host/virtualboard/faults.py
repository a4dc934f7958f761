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
        """What `data` becomes on the line. Every byte draws the same numbers whatever the stretches the
        bytes come in, so the faults depend only on the seed and the position in the stream."""
        spec = self.spec
        if not data or not spec.active:
            return Faulted(data, [], [])
        draws = self._rng[direction].random((len(data), 6))
        hit = np.zeros(len(data), bool)
        corrupt = drop = dup = stall = hit
        if spec.dir in ("both", direction):
            corrupt, drop, dup, stall = (draws[:, k] < p for k, p in
                                         enumerate((spec.corrupt, spec.drop, spec.dup, spec.stall)))
        reset = hit
        if direction == "rx" and spec.reset > 0:  # the board resets when such a delimiter reaches it
            reset = (np.frombuffer(data, np.uint8) == 0) & (draws[:, 4] < 1.0 / spec.reset)
        events = np.flatnonzero(corrupt | drop | dup | stall | reset)
        if not len(events):
            return Faulted(data, [], [])
        buf = bytearray(data)
        out = bytearray()
        stalls: list[tuple[int, float]] = []
        resets: list[int] = []
        done = 0
        for i in events.tolist():  # copy the clean stretches between events in one go
            out += buf[done:i]
            done = i + 1
            if stall[i]:
                stalls.append((len(out), spec.stall_ms / 1000.0))
                self.counts.stalls += 1
            if drop[i]:
                self.counts.dropped += 1
                continue
            if corrupt[i]:
                buf[i] ^= 1 + int(draws[i, 5] * 255)  # never 0: the byte really changes
                self.counts.corrupted += 1
            elif reset[i]:
                resets.append(len(out))
                self.counts.resets += 1
            out.append(buf[i])
            if dup[i]:
                out.append(buf[i])
                self.counts.duplicated += 1
        out += buf[done:]
        return Faulted(bytes(out), stalls, resets)
