"""Recognise what kind of model a path holds, by content as well as by name."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from k210.core.errors import BadInputError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier at offset 4


class ModelFormat(str, Enum):
    KERAS = "keras"  # .keras zip or legacy .h5
    SAVED_MODEL = "saved_model"
    FROZEN_PB = "frozen_pb"
    TFLITE = "tflite"
    KMODEL = "kmodel"
    ONNX = "onnx"


@dataclass(frozen=True)
class ModelSource:
    path: Path
    format: ModelFormat

    @property
    def name(self) -> str:
        return self.path.stem if self.format is not ModelFormat.SAVED_MODEL else self.path.name


def detect(path: str | Path) -> ModelSource:
    """Classify `path` or raise BadInputError with what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"model not found: {p}")
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return ModelSource(p, ModelFormat.SAVED_MODEL)
        raise BadInputError(f"{p} is a directory but not a SavedModel (no saved_model.pb)")
    head = _head(p)
    if not head:
        raise BadInputError(f"{p} is empty")
    suffix = p.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(p):
            raise BadInputError(f"{p} is not a .keras file (not a zip archive)")
        return ModelSource(p, ModelFormat.KERAS)
    if suffix in (".h5", ".hdf5"):
        if not head.startswith(HDF5_SIGNATURE):
            raise BadInputError(f"{p} is not an HDF5 Keras model (bad signature)")
        return ModelSource(p, ModelFormat.KERAS)
    if suffix == ".tflite" or head[4:8] == TFLITE_IDENTIFIER:
        if head[4:8] != TFLITE_IDENTIFIER:
            raise BadInputError(f"{p} is not a TFLite flatbuffer (no 'TFL3' identifier)")
        return ModelSource(p, ModelFormat.TFLITE)
    if suffix == ".kmodel" or head.startswith(b"LDMK"):
        return ModelSource(p, ModelFormat.KMODEL)
    if suffix == ".onnx":
        return ModelSource(p, ModelFormat.ONNX)
    if suffix in (".pb", ".graphdef"):
        return ModelSource(p, ModelFormat.FROZEN_PB)
    raise BadInputError(
        f"cannot tell what kind of model {p} is: expected .keras, .h5, a SavedModel directory, "
        ".pb (frozen GraphDef), .tflite or .kmodel"
    )


def _head(p: Path, n: int = 16) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise BadInputError(f"cannot read {p}: {exc.strerror}") from None
