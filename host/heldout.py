"""Check data that were not the calibration data.

`k210 compile` records a short hash of every calibration sample in the model card; `verify` and
`hil` drop those samples from what they check, so the default verdict is on held-out data. A user's
own data (an image folder or arrays) has a single split: compile calibrates on a deterministic
share of it (the samples whose hashes sort lowest, `1 - holdout` of them) and the rest is left for
the checks. A sample's hash is of its uint8 pixels as the model sees them (after resizing), or of
its float32 tensor when the data are model inputs already, so it does not depend on file names or order.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

HASH_HEX = 16  # 64 bits: enough to tell samples apart, short enough for 200 of them in a card
DEFAULT_HOLDOUT = 0.8  # of a user's own data, kept for checks; compile calibrates on the other 20 %


def sample_hashes(rows: np.ndarray) -> list[str]:
    """One short sha256 per sample (row of `rows`)."""
    rows = np.ascontiguousarray(rows)
    return [hashlib.sha256(row.tobytes()).hexdigest()[:HASH_HEX] for row in rows]


def calibration_pool(hashes: list[str], holdout: float) -> np.ndarray:
    """Indices of the samples compile may calibrate on: the lowest-sorting `1 - holdout` share by hash
    (at least one; at least one left for checks when there are two or more)."""
    n = len(hashes)
    if n == 0 or holdout <= 0:
        return np.arange(n)
    share = max(1, math.ceil(n * (1.0 - holdout)))
    if n >= 2:
        share = min(share, n - 1)
    order = sorted(range(n), key=lambda i: (hashes[i], i))
    return np.sort(np.asarray(order[:share], np.int64))


def keep_unless(hashes: list[str], excluded: frozenset[str] | set[str]) -> np.ndarray:
    """Indices of the samples whose hash is not in `excluded`."""
    return np.asarray([i for i, h in enumerate(hashes) if h not in excluded], np.int64)
