"""IDX files (the MNIST / Fashion-MNIST / EMNIST format), raw or gzipped, read with every field checked.

Layout: two zero bytes, a type code, the number of dimensions, then one big-endian u32 per
dimension and the data, big-endian, nothing after it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError
from k210.core.fsutil import read_input_bytes

# Type code -> big-endian dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_MAX_DIMS = 8  # real files have 1 (labels) or 3 (images); more means a corrupt header


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw, told apart by content); native byte order on return."""
    path = Path(path)
    raw = read_input_bytes(path, "IDX file")
    return parse_idx(raw, str(path))


MAX_IDX_BYTES = 1 << 30  # the largest IDX data this reads (EMNIST byclass, the biggest, is ~550 MB)
_STEP = 1 << 20  # bytes inflated at a time, so a bomb is stopped within a step of its limit


def parse_idx(data: bytes, name: str = "IDX data", max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse IDX bytes (gzipped or not); ``name`` is what an error message calls them.

    A gzip stream is inflated only as far as its IDX header says the data go (and never past
    ``max_bytes``): a small file that would inflate to far more is refused, not inflated."""
    if data[:2] == b"\x1f\x8b":
        data = _gunzip_idx(data, name, max_bytes)
    if len(data) < 4:
        raise BadInputError(f"{name}: not an IDX file (only {len(data)} bytes)")
    dims, dtype, header, expected = _header(data, name)
    if expected > max_bytes:
        raise BadInputError(f"{name}: its IDX header declares {expected:,} bytes (dims {dims}), more than the "
                            f"{max_bytes:,} this reads")
    if len(data) < expected:
        raise BadInputError(f"{name}: truncated IDX file ({len(data)} bytes, dims {dims} need {expected})")
    if len(data) > expected:
        raise BadInputError(f"{name}: {len(data) - expected} unexpected bytes after the IDX data")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _header(data: bytes | bytearray, name: str) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """(dims, dtype, header bytes, whole file bytes) from the first 4 + 4*ndim bytes."""
    zero, code, ndim = struct.unpack(">HBB", bytes(data[:4]))
    if zero != 0 or code not in _DTYPES or not 1 <= ndim <= _MAX_DIMS:
        raise BadInputError(f"{name}: not an IDX file (bad magic {bytes(data[:4]).hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BadInputError(f"{name}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", bytes(data[4:header]))
    dtype = _DTYPES[code]
    return dims, dtype, header, header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize


def _gunzip_idx(data: bytes, name: str, max_bytes: int) -> bytes:
    """The gzip members of ``data`` inflated, at most what the IDX header declares (+1 byte, to find more)."""
    out = bytearray()
    limit = max_bytes
    declared = 0
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)  # one gzip member
            pending = rest
            while not inflater.eof:
                if not declared and len(out) >= 4 and len(out) >= 4 + 4 * out[3]:
                    dims, _, _, declared = _header(out, name)  # what the header says the file holds
                    if declared > max_bytes:
                        raise BadInputError(f"{name}: its IDX header declares {declared:,} bytes (dims {dims}), "
                                            f"more than the {max_bytes:,} this reads")
                    limit = declared
                if len(out) > limit:
                    break
                chunk = inflater.decompress(pending, min(_STEP, limit + 1 - len(out)))
                pending = inflater.unconsumed_tail
                out += chunk
                if not chunk and not pending and not inflater.eof:
                    raise BadInputError(f"{name}: truncated gzip data")
            if len(out) > limit:
                raise BadInputError(f"{name}: the gzip data inflate to more than the {limit:,} bytes its IDX header "
                                    f"declares (or this reads); refusing it")
            rest = inflater.unused_data
            if not rest.startswith(b"\x1f\x8b"):
                if rest.strip(b"\0"):
                    raise BadInputError(f"{name}: {len(rest)} bytes after the gzip data")
                break
    except zlib.error as exc:
        raise BadInputError(f"{name}: corrupt or truncated gzip data ({exc})") from None
    return bytes(out)


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes for ``array`` (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">")
    if big not in _CODES:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}")
    header = struct.pack(">HBB", 0, _CODES[big], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


# MNIST-style folders (MNIST, Fashion-MNIST): four files, gzipped or not.
SPLIT_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def find_split_files(folder: str | os.PathLike[str]) -> dict[str, Path] | None:
    """The four MNIST-style files in ``folder`` (``.gz`` preferred), or None if any is missing."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for key, stem in SPLIT_FILES.items():
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def read_split_folder(folder: str | os.PathLike[str], what: str) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test from an MNIST-style folder; ``what`` names it in errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{what}: not a directory: {folder}")
    files = find_split_files(folder)
    if files is None:
        names = ", ".join(f"{stem}[.gz]" for stem in SPLIT_FILES.values())
        raise BadInputError(f"{what}: {folder} lacks the IDX files ({names})")
    return {key: read_idx(path) for key, path in files.items()}
