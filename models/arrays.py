"""The user's own arrays: `.npy` (inputs only) or `.npz` with `x` and optional `y` (class indices).

uint8 arrays are pixels and go through the model's preprocessing; float arrays are taken as model
inputs, already preprocessed, and are checked against the input shape only.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError


@dataclass(frozen=True)
class UserArrays:
    x: np.ndarray  # uint8 pixels [N, H, W(, C)] or float32 model inputs [N, ...]
    y: np.ndarray | None  # int64 [N] or None
    source: str

    @property
    def are_pixels(self) -> bool:
        return self.x.dtype == np.uint8


def load_arrays(path: str | os.PathLike[str]) -> UserArrays:
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"array file not found: {p}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise BadInputError(f"{p} holds pickled objects, which are not read (use numeric arrays)") from None
        raise BadInputError(f"{p} is not a .npy/.npz file: {str(exc).splitlines()[0][:200]}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"cannot read {p}: {str(exc).splitlines()[0][:200] or type(exc).__name__}") from None
    if isinstance(loaded, np.ndarray):
        x, y = loaded, None
    else:
        with loaded:
            keys = set(loaded.files)
            if "x" not in keys:
                hint = ("; for a named set's file (as mnist.npz) add --dataset NAME" if "x_train" in keys
                        else "; save the inputs as x=..., the labels as y=...")
                raise BadInputError(f"{p} has no array 'x' (it holds {', '.join(sorted(keys)) or 'nothing'}){hint}")
            try:
                x = loaded["x"]
                y = loaded["y"] if "y" in keys else None
            except ValueError:
                raise BadInputError(f"{p} holds pickled objects, which are not read (use numeric arrays)") from None
    return UserArrays(_check_x(x, p), None if y is None else _check_y(y, len(x), p), str(p))


def _check_x(x: np.ndarray, p: Path) -> np.ndarray:
    if x.ndim < 2 or len(x) == 0:
        raise BadInputError(f"{p}: x has shape {list(x.shape)}; expected [N, ...] with N >= 1 inputs")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind != "f":
        raise BadInputError(f"{p}: x is {x.dtype}; expected uint8 pixels or float32 model inputs")
    if not np.isfinite(x).all():
        raise BadInputError(f"{p}: x contains NaN or infinity")
    return x.astype(np.float32)


def _check_y(y: np.ndarray, count: int, p: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)  # one-hot rows
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != count:
        raise BadInputError(f"{p}: y has shape {list(y.shape)}; expected {count} class indices, one per input")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.array_equal(y, np.round(y))):
        raise BadInputError(f"{p}: y is {y.dtype}; expected integer class indices")
    if y.size and y.min() < 0:
        raise BadInputError(f"{p}: y has negative class indices")
    return y.astype(np.int64)
