"""`k210 explain`'s builds at once: a pool over the cores, files every build shares, fixes cut early.

Each build is its own nncase child process (converters.quant_worker): nncase is never loaded in this
process (measured: a Python thread beside nncase's compile runs at 2.5 % of its rate, so the compile
holds the GIL), so a pool thread per build only writes a request and waits on its child, and `workers`
builds run on as many cores. What every build reads (the
float model, the calibration and check tensors) is written once to one temporary folder; TFLite's
reference outputs are computed once in this process, which scores every build.

Cutting is exact, so the best fix and every figure of the fixes that finish are those of the serial
run: a fix first runs on the first k of the M check inputs; agreement and output cosine are means over
inputs of values <= 1, so the most it can still reach is (k * its figure on those + (M - k)) / M. When
that is below the best (agreement, cosine) already measured in every ranking the fix takes part in
(best fix, best buildable build, best uint8 fix), it cannot change any of them and stops there.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from k210.converters.quant_explain import Build

T = TypeVar("T")
Key = tuple[float, float]  # (agreement, output cosine): how explain ranks builds
EPSILON = 1e-9  # float rounding of a mean: a bound this close to the best is not below it

# the rankings a build can win (report["best_fix"], report["best_build"], notes' "best uint8 fix")
FIXES, BUILDS, UINT8 = "best fix", "best buildable build", "best uint8 fix"


def default_workers() -> int:
    """The cores this process may use (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def rankings(*, baseline: bool = False, uint8: bool = True, buildable: bool = True) -> frozenset[str]:
    """Which of the rankings a build takes part in."""
    if baseline:
        return frozenset({BUILDS, UINT8})
    if not uint8:
        return frozenset({FIXES})
    return frozenset({FIXES, UINT8} | ({BUILDS} if buildable else set()))


def bound(figure: float, first: int, total: int) -> float:
    """The most a mean over `total` inputs of values <= 1 can reach when its first `first` average `figure`."""
    return (first * figure + (total - first)) / total


def below(candidate: Key, best: Key) -> bool:
    """candidate < best as explain ranks (agreement, then cosine), with rounding in candidate's favour."""
    if candidate[0] < best[0] - EPSILON:
        return True
    return candidate[0] <= best[0] + EPSILON and candidate[1] < best[1] - EPSILON


class Race:
    """The best key measured so far in each ranking; whether a fix's bound can still win one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._best: dict[str, Key] = {}

    def finished(self, groups: frozenset[str], key: Key) -> None:
        with self._lock:
            for group in groups:
                if group not in self._best or below(self._best[group], key):
                    self._best[group] = key

    def can_win(self, groups: frozenset[str], candidate: Key) -> bool:
        with self._lock:
            return any(group not in self._best or not below(candidate, self._best[group]) for group in groups)


class Builds:
    """A pool of `workers` threads, each running one build (a child process) at a time, the folder of
    shared files, and each build's time (the ratio the benchmark prints: wall / (sum / cores))."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._tmp = tempfile.TemporaryDirectory(prefix="k210-explain-shared-")
        self.folder = Path(self._tmp.name)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="explain-build")
        self._lock = threading.Lock()
        self.timings: list[dict[str, Any]] = []
        self._files: dict[str, Path] = {}

    def __enter__(self) -> Builds:
        return self

    def __exit__(self, *exc) -> None:
        # after a failure, builds not started yet are dropped; running ones end with their child
        self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        self._tmp.cleanup()

    def array(self, name: str, values: np.ndarray) -> Path:
        """`values` as a .npy file every build reads (written the first time it is asked for)."""
        with self._lock:
            if name not in self._files:
                path = self.folder / f"{name}.npy"
                np.save(path, np.ascontiguousarray(values))
                self._files[name] = path
            return self._files[name]

    def model(self, name: str, tflite: bytes) -> Path:
        with self._lock:
            if name not in self._files:
                path = self.folder / f"{name}.tflite"
                path.write_bytes(tflite)
                self._files[name] = path
            return self._files[name]

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        return self._pool.submit(fn)

    def timed(self, name: str, built: Build) -> None:
        """One nncase build's time (its child process, compile and simulator): wall and CPU."""
        with self._lock:
            self.timings.append({"name": name, "seconds": round(built.seconds, 2),
                                 "cpu_seconds": round(built.cpu_seconds, 2), "cut": built.cut})


class Once:
    """A value computed by the first thread that asks for it (a transform two fixes share)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Any, threading.Lock] = {}
        self._values: dict[Any, Any] = {}

    def get(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = make()
            return self._values[key]


def summary(builds: Builds, started: float) -> dict[str, Any]:
    """Wall time against the builds' own: 1.0 when the cores never wait. Their CPU time says what the
    wall would be with the cores to themselves (on a shared machine each build's wall time grows)."""
    wall = time.perf_counter() - started
    total = sum(t["seconds"] for t in builds.timings)
    return {"workers": builds.workers, "wall_seconds": round(wall, 1), "build_seconds": round(total, 1),
            "build_cpu_seconds": round(sum(t["cpu_seconds"] for t in builds.timings), 1), "builds": builds.timings,
            "wall_over_builds_per_worker": round(wall / (total / builds.workers), 3) if total > 0 else None}
