"""Board vs simulator: the board runs the same kmodel, so its outputs must be the simulator's.

Allowance, per value (documented in docs/pass-rules.md):
- a uint8 (or other integer) output: one output step (1);
- a float32 output of a quantised model (the simulator's values over the check data sit on a grid
  of at most 256 levels): one step of that grid;
- any other float32 output: 8 ULPs of the simulator's value (the board's FPU and libm may round
  differently from the host's).
Any image with a value beyond its allowance fails the run, and is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ULPS = 8
GRID_LEVELS = 256


def grid_step(values: np.ndarray) -> float:
    """The step of the grid the values sit on (a dequantised uint8 output), or 0.0 if they are not on one."""
    unique = np.unique(np.asarray(values, np.float64))
    if len(unique) < 3 or len(unique) > GRID_LEVELS:
        return 0.0
    diffs = np.diff(unique)
    step = float(diffs.min())
    if step <= 0:
        return 0.0
    multiples = diffs / step
    if np.abs(multiples - np.round(multiples)).max() > 1e-3:
        return 0.0
    return step


@dataclass(frozen=True)
class Allowance:
    kind: str  # "integer step", "grid step", "ulps"
    step: float  # the step for the first two; the ULP count for "ulps"

    def per_value(self, simulator: np.ndarray) -> np.ndarray:
        if self.kind == "ulps":
            sim = np.abs(np.asarray(simulator, np.float32))
            return self.step * np.spacing(sim).astype(np.float64)
        slack = 1.001 if self.kind == "grid step" else 1.0  # one level apart, give or take float32 rounding
        return np.full(np.shape(simulator), self.step * slack, np.float64)

    def describe(self) -> str:
        if self.kind == "ulps":
            return f"{self.step:g} float32 ULPs"
        return f"one output step ({self.step:.4g})" if self.kind == "grid step" else "one output step (1)"


def allowance_for(simulator: np.ndarray, dtype: str) -> Allowance:
    if not dtype.startswith("float"):
        return Allowance("integer step", 1.0)
    step = grid_step(simulator)
    return Allowance("grid step", step) if step > 0 else Allowance("ulps", float(ULPS))


def board_vs_simulator(board: np.ndarray, simulator: np.ndarray, dtype: str) -> dict[str, Any]:
    """Per image, whether the board's values are the simulator's within the allowance ([N, values] each)."""
    b = np.asarray(board, np.float64).reshape(len(board), -1)
    s = np.asarray(simulator, np.float64).reshape(len(simulator), -1)
    allowance = allowance_for(s, dtype)
    limit = allowance.per_value(s)
    with np.errstate(invalid="ignore"):
        over = np.abs(b - s) - limit
    over = np.where(np.isnan(over), np.inf, over)  # NaN from a board is never within anything
    beyond = np.flatnonzero((over > 0).any(axis=1)) if len(b) else np.zeros(0, np.int64)
    identical = int(sum(1 for i in range(len(b)) if np.array_equal(b[i], s[i])))
    result: dict[str, Any] = {"allowance": allowance.describe(), "images_beyond": [int(i) for i in beyond[:20]],
                              "images_beyond_count": int(len(beyond)), "identical_images": identical}
    if len(beyond):
        worst = int(beyond[np.argmax(np.max(np.abs(b[beyond] - s[beyond]), axis=1))])
        gap = float(np.max(np.abs(b[worst] - s[worst])))
        unit = allowance.step if allowance.kind != "ulps" else None
        result["worst"] = {"image": worst, "max_difference": gap,
                           "in_steps": gap / unit if unit else None}
    return result
