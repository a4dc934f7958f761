"""`--dataset random`: seeded uniform inputs, for checking fidelity where no data or labels exist.

Pixels are uniform over 0..255, so after the model's preprocessing the inputs are uniform over its
input range (256 levels), for a uint8 and a float32 kmodel alike.
"""

from __future__ import annotations

import numpy as np

from k210.core.errors import BadInputError

DEFAULT_COUNT = 200


def random_pixels(count: int, image_shape: tuple[int, int, int], seed: int) -> np.ndarray:
    if count < 1:
        raise BadInputError(f"random data needs at least 1 sample, got {count}")
    return np.random.default_rng(seed).integers(0, 256, (count, *image_shape), dtype=np.uint8)
