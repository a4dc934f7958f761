"""What the host sends for each image: the tensor, a zlib stream of it, or only its SHA-256 (issue 15).

A board that announces CAP_INFLATE takes INFER requests in mode ZLIB; one with CAP_CACHE keeps the
tensors of KEEP requests under their SHA-256 and runs a CACHED request (the 32-byte hash alone) on the
tensor it kept (PROTOCOL.md 3.5). Per image the planner sends whichever is smallest:

* CACHED, when the image is one the board may hold: a board keeps samples across runs (SD card), so a
  team re-running its test set sends each image once. A board that does not hold it answers
  NOT_CACHED (also when the entry failed its hash check: it is then dropped), and the image goes again
  with its bytes. Whether to ask first is learnt: the first image is a probe, and no new image starts
  until it is answered (`waiting()`: one round trip); a hit makes the cache "warm" (every image asked by
  hash), a miss "cold" (bytes, and one probe every PROBE_EVERY images), so a cold cache costs a few
  round trips, not one per image. A warm cache turns cold after two misses with no hit between them (one image the
  board lost, e.g. to a power cut, says little about the rest); a damaged entry changes no state.
* else the zlib stream of the tensor if it is smaller (per image), else the tensor itself, with KEEP and
  the hash in front when the image is one the board should keep.

Which images the board should keep: those that fit its announced cache size, in the order the host
first sends them, so that a second run of the same set finds the same images kept. A board without
caps (an older runner) gets plain requests: exactly what it understood before.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from k210.firmware import k210wire as w

from .messages import Hello

PROBE_EVERY = 16  # images between CACHED probes once the board's cache turned out cold
ENTRY_OVERHEAD = 40  # bytes a cache entry takes besides the tensor (k210cache.HEAD_LEN)
ZLIB_LEVEL = 9

ALL_MODES = w.MODE_ZLIB | w.MODE_KEEP | w.MODE_CACHED


@dataclass
class SampleFigures:
    raw: int = 0  # requests that carried the tensor as it is
    zlib: int = 0  # ... as a zlib stream
    cached: int = 0  # requests that named a hash only
    hits: int = 0  # CACHED requests answered with a RESULT
    misses: int = 0  # CACHED requests answered NOT_CACHED
    damaged: int = 0  # ... of which the board found its entry damaged
    kept: int = 0  # requests that asked the board to keep their tensor
    tensor_bytes: int = 0  # bytes of the tensors answered (what raw requests would have sent)
    stream_bytes: int = 0  # bytes of the request streams actually built

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class SamplePlanner:
    """Per board: the mode and stream of each image's next request."""

    def __init__(self, hello: Hello, payload_of: Callable[[int], bytes], allowed: int = ALL_MODES) -> None:
        self.payload_of = payload_of
        modes = 0
        if hello.caps & w.CAP_INFLATE:
            modes |= w.MODE_ZLIB
        if hello.caps & w.CAP_CACHE:
            modes |= w.MODE_KEEP | w.MODE_CACHED
        self.modes = modes & allowed
        self.budget = hello.cache_bytes if self.modes & w.MODE_KEEP else 0
        self.planned = 0  # cache bytes given to the images chosen to be kept
        self.keepable: dict[int, bool] = {}
        self.missed: set[int] = set()
        self.state = "unknown"  # -> probing -> warm | cold (-> probing again every PROBE_EVERY images)
        self.since_probe = 0
        self._sizes: dict[int, int] = {}
        self._misses_in_row = 0
        self.probe = -1  # the image whose CACHED request is the probe in flight
        self._packed: dict[int, tuple[bytes, bytes | None]] = {}  # index -> (sha256, zlib stream if smaller)
        self.figures = SampleFigures()

    def _pack(self, index: int, raw: bytes) -> tuple[bytes, bytes | None]:
        if index not in self._packed:
            packed = zlib.compress(raw, ZLIB_LEVEL) if self.modes & w.MODE_ZLIB else None
            self._packed[index] = (hashlib.sha256(raw).digest(), packed if packed and len(packed) < len(raw) else None)
        return self._packed[index]

    def _keepable(self, index: int, nbytes: int) -> bool:
        if index not in self.keepable:
            fits = self.planned + nbytes + ENTRY_OVERHEAD <= self.budget
            if fits:
                self.planned += nbytes + ENTRY_OVERHEAD
            self.keepable[index] = fits
        return self.keepable[index]

    def _ask_first(self, index: int) -> bool:
        if index in self.missed or self.state == "probing":
            return False
        if self.state == "cold":
            self.since_probe += 1
            if self.since_probe < PROBE_EVERY:
                return False
            self.since_probe = 0
        if self.state != "warm":
            self.state = "probing"
            self.probe = index
        return True

    def waiting(self) -> bool:
        """True while a probe is out: new images wait for its answer rather than guess."""
        return self.state == "probing"

    def request(self, index: int) -> tuple[int, bytes]:
        """(mode, stream) of the next request for image `index`."""
        raw = self.payload_of(index)
        f = self.figures
        self._sizes[index] = len(raw)
        if not self.modes:
            f.raw += 1
            f.stream_bytes += len(raw)
            return 0, raw
        sha, packed = self._pack(index, raw)
        keep = bool(self.modes & w.MODE_KEEP) and self._keepable(index, len(raw))
        if keep and self._ask_first(index):
            f.cached += 1
            f.stream_bytes += len(sha)
            return w.MODE_CACHED, sha
        mode, body = 0, raw
        if packed is not None:
            mode, body = w.MODE_ZLIB, packed
            f.zlib += 1
        else:
            f.raw += 1
        if keep:
            mode |= w.MODE_KEEP
            body = sha + body
            f.kept += 1
        f.stream_bytes += len(body)
        return mode, body

    def answered(self, index: int, mode: int) -> None:
        """A RESULT came for this request."""
        self.figures.tensor_bytes += self._sizes.get(index, 0)
        if index == self.probe and mode != w.MODE_CACHED and self.state == "probing":
            self.state = "unknown"  # the probe was lost and went again with its bytes: probe anew
        if mode == w.MODE_CACHED:
            self.figures.hits += 1
            self.state = "warm"
            self._misses_in_row = 0

    def miss(self, index: int, damaged: bool) -> None:
        """The board answered NOT_CACHED: the image goes again with its bytes."""
        self.figures.misses += 1
        self.figures.damaged += int(damaged)
        self.missed.add(index)
        if damaged:
            if self.state == "probing":
                self.state = "warm"  # there is a cache with our samples; that one went bad
            return
        self._misses_in_row += 1
        if self.state == "warm" and self._misses_in_row < 2:
            return
        self.state = "cold"
        self.since_probe = 0
