"""The course's ``xo_dataset.bin``: a pickled dict of numpy arrays, read without running pickled code.

``pickle.load`` calls whatever callables a file names, so a hostile file runs code on load. Here
a restricted unpickler resolves only the handful of globals that rebuilding numpy arrays needs
(old numpy's ``numpy.core`` paths and numpy 2's ``numpy._core`` alike), each behind a stand-in that
takes only what numpy itself writes, and refuses anything else before it can be called. A dtype's
BUILD step is read as a byte order only, and every array must hold plain numbers (issue 22).
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from k210.core.errors import BadInputError
from k210.core.fsutil import read_input_bytes

COURSE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
ARRAY_KINDS = "biuf"  # bool, int, uint, float: what a data set's images and labels are


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


def _numeric_dtype(dtype: Any, what: str) -> np.dtype:
    """A plain number type (bool, int, uint, float): no fields, no objects, no sub-arrays, no strings."""
    if not isinstance(dtype, np.dtype):
        raise BadInputError(f"refusing pickle: {what} is a {type(dtype).__name__}, not a numpy dtype")
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None or dtype.hasobject:
        raise BadInputError(f"refusing pickle: {what} has dtype {dtype.str}; a data set holds numbers only")
    return dtype


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """Stand-in for ``numpy.dtype``: a type code string only (numpy pickles dtypes as ``dtype('u1', ...)``),
    never a list or dict spec that would build a structured type."""
    if not isinstance(spec, str):
        raise BadInputError(f"refusing pickle: numpy.dtype({type(spec).__name__}), not a type code")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise BadInputError(f"refusing pickle: numpy.dtype({spec!r}) is no type") from None
    return _numeric_dtype(dtype, f"dtype {spec!r}")


def _bytearray(data: Any = b"", encoding: Any = None) -> bytearray:
    """Stand-in for ``bytearray``: from bytes or latin-1 text in the file, never a size (bytearray(300_000_000)
    would allocate what the file does not hold)."""
    if isinstance(data, (bytes, bytearray)) and encoding is None:
        return bytearray(data)
    if isinstance(data, str) and isinstance(encoding, str):
        return bytearray(_latin1_encode(data, encoding))
    raise BadInputError(f"refusing pickle: bytearray({type(data).__name__}), not bytes from the file")


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any] | type]:
    reconstruct = _numpy_attr("multiarray", "_reconstruct")
    scalar = _numpy_attr("multiarray", "scalar")
    frombuffer = _numpy_attr("numeric", "_frombuffer")  # protocol 5 arrays

    def empty_array(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
        # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') then BUILD with its real shape and
        # bytes; any other shape would allocate memory the file does not hold.
        if subtype is not np.ndarray or not isinstance(shape, tuple) or any(d != 0 for d in shape):
            raise BadInputError("refusing pickle: _reconstruct of anything but an empty ndarray")
        return reconstruct(subtype, shape, typecode)

    def numeric_scalar(dtype: Any, *args: Any) -> Any:
        return scalar(_numeric_dtype(dtype, "a scalar"), *args)

    def array_from_buffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        return frombuffer(buf, _numeric_dtype(dtype, "an array"), shape, order)

    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = empty_array
        allowed[(f"{package}.multiarray", "scalar")] = numeric_scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = array_from_buffer
    # Plain containers; a dict, list, tuple, str or bytes needs no global at all. Each is built from what
    # the file holds (an iterable, a number), so the memory it takes is bounded by the file's size.
    for module in ("builtins", "__builtin__"):  # __builtin__: Python 2 pickles
        allowed[(module, "bytearray")] = _bytearray
        for plain in (set, frozenset, complex):
            allowed[(module, plain.__name__)] = plain
    return allowed


def _built_dtype(dtype: np.dtype, state: Any) -> np.dtype:
    """What a dtype's BUILD may say: its byte order, nothing else. numpy's ``dtype.__setstate__`` is never
    called: its state can make a structured type with an object field whose flag is hidden, so raw file
    bytes would be read as object pointers (a crash, or worse)."""
    if (not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4)
            or state[1] not in ("<", ">", "|", "=") or any(part is not None for part in state[2:5])
            or state[7] != 0):
        raise BadInputError(f"refusing pickle: dtype {dtype.str} with a state that is not a plain byte order")
    return _numeric_dtype(dtype.newbyteorder(state[1]) if state[1] in "<>" else dtype, "a dtype")


class ArraysOnlyUnpickler(pickle._Unpickler):  # the Python unpickler: only its BUILD step can be replaced
    """An unpickler that can rebuild numpy arrays of numbers and plain containers, and nothing else."""

    _allowed = _allowed_globals()
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise BadInputError(
                f"refusing to unpickle {module}.{name}: a dataset file only needs numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise BadInputError("refusing pickle: it references persistent objects")

    def load_build(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            self.stack.pop()
            built = _built_dtype(inst, state)
            self.stack[-1] = built
            for key, value in list(self.memo.items()):  # later references (BINGET) get the built one too
                if value is inst:
                    self.memo[key] = built
            return
        if type(inst) is not np.ndarray:
            raise BadInputError(f"refusing pickle: BUILD on a {type(inst).__name__}")
        if not isinstance(state, tuple) or len(state) != 5:
            raise BadInputError("refusing pickle: an array state that numpy does not write")
        _numeric_dtype(state[2], "an array")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


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
            AttributeError, MemoryError, OverflowError, UnicodeDecodeError, struct.error) as exc:
        raise BadInputError(f"{name}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def checked_array(value: Any, what: str) -> np.ndarray:
    """A plain numpy array of numbers, whatever the pickle built (a subclass, fields, objects are refused)."""
    if type(value) is not np.ndarray:
        raise BadInputError(f"{what} is not a numeric numpy array")
    _numeric_dtype(value.dtype, what)
    return value


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
        try:
            arrays[key] = checked_array(content[key], key)
        except BadInputError as exc:
            raise BadInputError(f"{path}: {exc}") from None
    return arrays
