"""The one JSON shape every `k210` command prints with `--json` and writes with `-o`/`--report`.

    {"schema_version": 1, "command": "verify", "exit_code": 0, "passed": true,
     "tools": {"k210-deploy": "0.1.0", "nncase": "1.9.0.20230322", "tensorflow": "2.21.0", ...},
     "inputs": [{"role": "kmodel", "path": "out/xo.kmodel", "bytes": 123088, "sha256": "…"}],
     "result": {...the command's own figures...}, "error": null}

`passed` is true exactly when the exit code is 0. Versions come from the installed distributions'
metadata, so building an envelope never imports TensorFlow or nncase (lint on a .tflite stays fast).
The schema is envelope.schema.json next to this file; schemas/COMMAND.result.schema.json, each command's `result`.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("envelope.schema.json")
RESULT_SCHEMAS = Path(__file__).with_name("schemas")  # COMMAND.result.schema.json: each command's `result`


def result_schema_path(command: str) -> Path:
    return RESULT_SCHEMAS / f"{command}.result.schema.json"

# Distribution names as pip knows them; the first one installed gives the version.
_TOOLS: dict[str, tuple[str, ...]] = {
    "k210-deploy": ("k210-deploy",),
    "nncase": ("nncase",),
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-intel", "tensorflow-macos"),
    "numpy": ("numpy",),
    "kflash": ("kflash",),
    "pyserial": ("pyserial",),
}


@lru_cache(maxsize=1)
def tool_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for tool, distributions in _TOOLS.items():
        found[tool] = None
        for dist in distributions:
            try:
                found[tool] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return found


def _digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, or of a directory's files (names and bytes, sorted) for a SavedModel."""
    digest = hashlib.sha256()
    if path.is_dir():
        size = 0
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = f.relative_to(path).as_posix().encode()
            digest.update(len(rel).to_bytes(4, "little") + rel)
            size += _update(digest, f)
        return size, digest.hexdigest()
    return _update(digest, path), digest.hexdigest()


def _update(digest: Any, path: Path) -> int:
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size


def describe_inputs(inputs: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """[{role, path, bytes, sha256}] for each (role, path) whose path exists; None paths are skipped."""
    pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
    described = []
    for role, value in pairs:
        for path in value if isinstance(value, list | tuple) else [value]:
            if path is None:
                continue
            p = Path(path)
            entry: dict[str, Any] = {"role": role, "path": str(p), "bytes": None, "sha256": None}
            try:
                entry["bytes"], entry["sha256"] = _digest(p)
            except OSError:
                pass  # not there (a board URL, a dataset name): named, not hashed
            described.append(entry)
    return described


def build_envelope(command: str, result: Any, *, exit_code: int = 0,
                   inputs: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
                   error: str | None = None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "exit_code": exit_code,
        "passed": exit_code == 0,
        "tools": tool_versions(),
        "inputs": describe_inputs(inputs),
        "result": result,
        "error": error,
    }


def to_json(envelope: Mapping[str, Any], *, indent: int | None = 2) -> str:
    import json

    return json.dumps(envelope, indent=indent, default=_json_default)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
