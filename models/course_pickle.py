"""The course's ``xo_dataset.bin``: a pickled dict of numpy arrays, read without running pickled code.

``pickle.load`` calls whatever callables a file names, so a hostile file runs code on load. Here
a restricted unpickler resolves only the handful of globals that rebuilding numpy arrays needs
(old numpy's ``numpy.core`` paths and numpy 2's ``numpy._core`` alike) and refuses anything else,
before it can be called.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from k210.core.errors import BadInputError
from k210.core.fsutil import read_input_bytes

COURSE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def _numpy_attr(module_tail: str, name: str) -> Any:
    """``numpy._core.<tail>.<name>`` on numpy 2, ``numpy.core.<tail>.<name>`` on numpy 1."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{module_tail}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {module_tail}.{name}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles store bytes as latin-1 text. Only that
    use is admitted, so a file cannot reach other codecs through it."""
    if not isinstance(text, str) or encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise BadInputError(f"refusing pickle: _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any] | type]:
    reconstruct = _numpy_attr("multiarray", "_reconstruct")
    scalar = _numpy_attr("multiarray", "scalar")
    frombuffer = _numpy_attr("numeric", "_frombuffer")  # protocol 5 arrays
    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    # Plain containers; a dict, list, tuple, str or bytes needs no global at all.
    for plain in (bytearray, set, frozenset, complex):
        allowed[("builtins", plain.__name__)] = plain
        allowed[("__builtin__", plain.__name__)] = plain  # Python 2 pickles
    return allowed


class ArraysOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise BadInputError(
                f"refusing to unpickle {module}.{name}: a dataset file only needs numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise BadInputError("refusing pickle: it references persistent objects")


def safe_loads(data: bytes, name: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`ArraysOnlyUnpickler`; every failure is a BadInputError."""
    # latin1 lets Python 2 pickles of numpy arrays load (their byte strings come as str).
    unpickler = ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1")
    try:
        return unpickler.load()
    except BadInputError as exc:
        raise BadInputError(f"{name}: {exc}") from None
    except RecursionError:
        raise BadInputError(f"{name}: pickle nested too deeply") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, MemoryError, OverflowError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{name}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def load_course_pickle(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The four arrays of a course-style ``xo_dataset.bin``, checked to be arrays."""
    path = Path(path)
    data = read_input_bytes(path, "the course's X/O pickle (xo_dataset.bin)")
    content = safe_loads(data, str(path))
    if not isinstance(content, dict):
        raise BadInputError(f"{path}: expected a dict with keys {', '.join(COURSE_KEYS)}, "
                            f"got {type(content).__name__}")
    missing = [key for key in COURSE_KEYS if key not in content]
    if missing:
        raise BadInputError(f"{path}: missing key(s) {', '.join(missing)}")
    arrays: dict[str, np.ndarray] = {}
    for key in COURSE_KEYS:
        value = content[key]
        if not isinstance(value, np.ndarray) or value.dtype == object:
            raise BadInputError(f"{path}: {key} is not a numeric numpy array")
        arrays[key] = value
    return arrays
