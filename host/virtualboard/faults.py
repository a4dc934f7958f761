"""Seeded link and board faults: corrupted, dropped and duplicated bytes, stalls, board resets.

A spec is `key=value` pairs separated by commas, e.g. `corrupt=1e-3,drop=1e-3,dup=1e-4,reset=500`:

    corrupt=P   probability per byte that it arrives with random bits flipped
    drop=P      probability per byte that it never arrives
    dup=P       probability per byte that it arrives twice
    stall=P     probability per byte that the line goes quiet before it, for stall_ms
    stall_ms=MS length of a stall (default 20)
    reset=N     the board resets on average once every N frames it receives (0: never)
    dir=D       which way byte faults hit: both (default), rx (host to board) or tx (board to host)
    dupchunk=P  probability that a chunk of the stream (chunk bytes, by position) is sent twice, as a
                relay or a USB-serial driver that repeats a buffer does
    chunk=N     bytes per chunk for dupchunk (default 32)

One-off events, each when the board has received its N-th frame (counting from 1 after boot of the
line, resets included), as a real line or board does them now and then:

    reset_at=N      the board resets (and then boots for boot_ms)
    boot_ms=MS      how long every boot after a reset takes (default: k210 board --boot-ms); bytes
                    that arrive meanwhile are lost, as on a board that is still starting
    silence_at=N    the line goes dead both ways for silence_s seconds (bytes sent meanwhile are lost)
    silence_s=S     (default 5)
    close_at=N      the port vanishes (socket boards: the connection is dropped and nobody can connect)
                    and comes back after close_s seconds at the same address, as a USB-serial adapter
                    that disappears while its board resets
    close_s=S       (default 2)

Resets are counted on frame delimiters the board receives, so they land anywhere: mid-upload,
between a request and its result, or while the board computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from k210.core.errors import BadInputError

_DIRECTIONS = ("both", "rx", "tx")
_PROBABILITIES = ("corrupt", "drop", "dup", "stall", "dupchunk")


@dataclass(frozen=True)
class FaultSpec:
    corrupt: float = 0.0
    drop: float = 0.0
    dup: float = 0.0
    stall: float = 0.0
    stall_ms: float = 20.0
    reset: float = 0.0
    dir: str = "both"
    dupchunk: float = 0.0
    chunk: float = 32
    reset_at: float = 0
    boot_ms: float = -1  # -1: the board's own boot time
    silence_at: float = 0
    silence_s: float = 5.0
    close_at: float = 0
    close_s: float = 2.0

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
            if not np.isfinite(number) or number < 0 or (key in _PROBABILITIES and number > 1) \
                    or (key == "chunk" and number < 1) or (key.endswith("_at") and number != int(number)):
                raise BadInputError(f"--faults: {key}={value} is out of range")
            values[key] = number
        return cls(**values)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return any((self.corrupt, self.drop, self.dup, self.stall, self.reset, self.dupchunk, self.reset_at,
                    self.silence_at, self.close_at))

    @property
    def closes(self) -> bool:
        """The port vanishes at some point: only a socket board can do that (a pty's path would change)."""
        return self.close_at > 0

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
    chunks_duplicated: int = 0


@dataclass
class Faulted:
    """What a stretch of bytes became on the line."""

    data: bytes
    stalls: list[tuple[int, float]]  # (index in data before which the line stalls, seconds)
    resets: list[int]  # indices in data of delimiters after which the board resets
    events: list[tuple[int, str]] = field(default_factory=list)  # (index in data, "silence" or "close")


class FaultInjector:
    """Applies a FaultSpec to the bytes crossing the line, reproducibly for a given seed."""

    def __init__(self, spec: FaultSpec, seed: int = 0) -> None:
        self.spec = spec
        streams = np.random.SeedSequence(seed).spawn(4)  # the first two as before: old seeds, same faults
        self._rng = {"rx": np.random.default_rng(streams[0]), "tx": np.random.default_rng(streams[1])}
        self._chunk_rng = {"rx": np.random.default_rng(streams[2]), "tx": np.random.default_rng(streams[3])}
        self._chunk_buf = {"rx": bytearray(), "tx": bytearray()}  # the chunk being filled, per direction
        self.frames_in = 0  # delimiters the board has received
        self.counts = FaultCounts()

    def apply(self, data: bytes, direction: str) -> Faulted:
        """What `data` becomes on the line. Every byte draws the same numbers whatever the stretches the
        bytes come in, so the faults depend only on the seed and the position in the stream."""
        spec = self.spec
        if not data or not spec.active:
            return Faulted(data, [], [])
        if spec.dupchunk > 0 and spec.dir in ("both", direction):
            data = self._duplicate_chunks(data, direction)
        faulted = self._per_byte(data, direction)
        if direction == "rx" and (spec.reset_at or spec.silence_at or spec.close_at):
            self._one_off_events(faulted)
        return faulted

    def _duplicate_chunks(self, data: bytes, direction: str) -> bytes:
        """Chunks are cut by stream position; a chunk that is repeated goes out again right after itself."""
        size = int(self.spec.chunk)
        buf = self._chunk_buf[direction]
        out = bytearray()
        for i in range(len(data)):
            buf.append(data[i])
            out.append(data[i])
            if len(buf) == size:
                if self._chunk_rng[direction].random() < self.spec.dupchunk:
                    out += buf
                    self.counts.chunks_duplicated += 1
                buf.clear()
        return bytes(out)

    def _one_off_events(self, faulted: Faulted) -> None:
        spec = self.spec
        for i in np.flatnonzero(np.frombuffer(faulted.data, np.uint8) == 0).tolist():
            self.frames_in += 1
            if self.frames_in == spec.reset_at:
                faulted.resets.append(i)
                faulted.resets.sort()
                self.counts.resets += 1
            if self.frames_in == spec.silence_at:
                faulted.events.append((i, "silence"))
            if self.frames_in == spec.close_at:
                faulted.events.append((i, "close"))

    def _per_byte(self, data: bytes, direction: str) -> Faulted:
        spec = self.spec
        if not (spec.corrupt or spec.drop or spec.dup or spec.stall or spec.reset):
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
