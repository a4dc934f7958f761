"""Stand-in for MicroPython's `urandom` (main.py mixes getrandbits into its boot nonce)."""

from __future__ import annotations

import os
import random
import types


def make_urandom() -> types.ModuleType:
    rng = random.Random(os.urandom(16))
    module = types.ModuleType("urandom")
    module.__dict__.update(getrandbits=rng.getrandbits, randint=rng.randint, random=rng.random, seed=rng.seed,
                           choice=rng.choice, uniform=rng.uniform, randrange=rng.randrange)
    return module
