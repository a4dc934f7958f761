"""What a pretrained .tflite says about its own input: TFLite model metadata, read without TensorFlow.

Most published TFLite models (MediaPipe's, TF Hub's, Model Maker's) carry a ``TFLITE_METADATA``
buffer: a second flatbuffer (``metadata_schema.fbs`` of TFLite Support) with, per input tensor,
the image properties (colour space, size), ``NormalizationOptions`` (``x = (pixel - mean) / std``
per channel) and value ``Stats`` (min/max). The reader below walks that flatbuffer by the schema's
field numbers with the ``flatbuffers`` runtime; fields it does not need are skipped.

Field numbers used (metadata_schema.fbs, TFLite Support):
  ModelMetadata: subgraph_metadata 3
  SubGraphMetadata: input_tensor_metadata 2
  TensorMetadata: name 0, content 3, process_units 4, stats 5
  Content: content_properties_type 0, content_properties 1 (union; 2 = ImageProperties)
  ImageProperties: color_space 0 (1 RGB, 2 GRAYSCALE), default_size 1 (ImageSize: width 0, height 1)
  ProcessUnit: options_type 0, options 1 (union; 1 = NormalizationOptions)
  NormalizationOptions: mean 0, std 1; Stats: max 0, min 1
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
from flatbuffers.table import Table

METADATA_NAME = b"TFLITE_METADATA"
COLOR_SPACES = {1: "rgb", 2: "grayscale"}
_IMAGE_PROPERTIES = 2
_NORMALIZATION_OPTIONS = 1


@dataclass(frozen=True)
class InputMetadata:
    """What the model's metadata says about its first input (None: the metadata does not say)."""

    name: str | None = None
    color: str | None = None  # "rgb" | "grayscale"
    size: tuple[int, int] | None = None  # (width, height)
    mean: tuple[float, ...] | None = None  # NormalizationOptions, applied to 0..255 pixels
    std: tuple[float, ...] | None = None
    value_min: tuple[float, ...] | None = None  # Stats of the input tensor (the model's input range)
    value_max: tuple[float, ...] | None = None

    @property
    def says_anything(self) -> bool:
        return any(v is not None for v in (self.color, self.size, self.mean, self.value_min))

    def input_range(self) -> tuple[tuple[float, float], tuple[float, ...], tuple[float, ...]] | None:
        """(input_range, mean, std) in the project's preprocessing terms, or None if the metadata is silent.

        The project maps pixels p to ``lo + p / 255 * (hi - lo)`` then ``(x - mean) / std``. A single
        NormalizationOptions (mean m, std s) is the range ((0 - m) / s, (255 - m) / s); per-channel
        values keep the range 0..255 and carry mean/std over. Stats alone (min, max) is the range.
        """
        if self.mean is not None and self.std is not None and all(s > 0 for s in self.std):
            if len(set(self.mean)) == 1 and len(set(self.std)) == 1:
                m, s = self.mean[0], self.std[0]
                return ((0.0 - m) / s, (255.0 - m) / s), (0.0,), (1.0,)
            return (0.0, 255.0), self.mean, self.std
        if self.value_min is not None and self.value_max is not None and len(self.value_min) == 1 \
                and len(self.value_max) == 1 and self.value_min[0] < self.value_max[0]:
            return (self.value_min[0], self.value_max[0]), (0.0,), (1.0,)
        return None

    def describe(self) -> str:
        parts = []
        if self.mean is not None:
            parts.append(f"NormalizationOptions mean {_fmt(self.mean)}, std {_fmt(self.std or ())}")
        if self.value_min is not None:
            parts.append(f"Stats min {_fmt(self.value_min)}, max {_fmt(self.value_max or ())}")
        if self.size is not None:
            parts.append(f"size {self.size[0]}x{self.size[1]}")
        if self.color is not None:
            parts.append(f"colour {self.color}")
        return ", ".join(parts) or "no input metadata"


def _fmt(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def metadata_buffer(tflite_bytes: bytes) -> bytes | None:
    """The TFLITE_METADATA flatbuffer inside a .tflite, or None."""
    import tflite

    try:
        model = tflite.Model.GetRootAsModel(tflite_bytes, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == METADATA_NAME:
                buffer = model.Buffers(entry.Buffer())
                return buffer.DataAsNumpy().tobytes() if buffer is not None and buffer.DataLength() else None
    except Exception:  # noqa: BLE001 - a damaged model is reported by the reader that needs it, not here
        return None
    return None


def _root(buf: bytes) -> Table:
    return Table(bytearray(buf), flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))


def _field(tab: Table, number: int) -> int:
    return tab.Offset(4 + 2 * number)


def _table(tab: Table, number: int) -> Table | None:
    off = _field(tab, number)
    return Table(tab.Bytes, tab.Indirect(tab.Pos + off)) if off else None


def _tables(tab: Table, number: int) -> list[Table]:
    off = _field(tab, number)
    if not off:
        return []
    start = tab.Vector(off)
    return [Table(tab.Bytes, tab.Indirect(start + 4 * i)) for i in range(tab.VectorLen(off))]


def _floats(tab: Table, number: int) -> tuple[float, ...] | None:
    off = _field(tab, number)
    if not off:
        return None
    start = tab.Vector(off)
    return tuple(float(tab.Get(flatbuffers.number_types.Float32Flags, start + 4 * i))
                 for i in range(tab.VectorLen(off)))


def _scalar(tab: Table, number: int, flags, default: int = 0) -> int:
    off = _field(tab, number)
    return int(tab.Get(flags, tab.Pos + off)) if off else default


def _string(tab: Table, number: int) -> str | None:
    off = _field(tab, number)
    return tab.String(tab.Pos + off).decode("utf-8", "replace") if off else None


def _union(tab: Table, number: int) -> Table | None:
    off = _field(tab, number)
    if not off:
        return None
    t = Table(tab.Bytes, 0)
    tab.Union(t, off)
    return t


def read_input_metadata(tflite_bytes: bytes) -> InputMetadata:
    """The first input's metadata (an empty InputMetadata when the model has none or it is unreadable)."""
    buf = metadata_buffer(tflite_bytes)
    if not buf:
        return InputMetadata()
    try:
        return _parse(buf)
    except Exception:  # noqa: BLE001 - metadata is advice: unreadable metadata is no metadata
        return InputMetadata()


def _parse(buf: bytes) -> InputMetadata:
    root = _root(buf)
    subgraphs = _tables(root, 3)
    if not subgraphs:
        return InputMetadata()
    inputs = _tables(subgraphs[0], 2)
    if not inputs:
        return InputMetadata()
    tensor = inputs[0]
    color = size = mean = std = None
    content = _table(tensor, 3)
    if content is not None and _scalar(content, 0, flatbuffers.number_types.Uint8Flags) == _IMAGE_PROPERTIES:
        image = _union(content, 1)
        if image is not None:
            color = COLOR_SPACES.get(_scalar(image, 0, flatbuffers.number_types.Int8Flags))
            dims = _table(image, 1)
            if dims is not None:
                width = _scalar(dims, 0, flatbuffers.number_types.Uint32Flags)
                height = _scalar(dims, 1, flatbuffers.number_types.Uint32Flags)
                size = (width, height) if width and height else None
    for unit in _tables(tensor, 4):
        if _scalar(unit, 0, flatbuffers.number_types.Uint8Flags) == _NORMALIZATION_OPTIONS:
            options = _union(unit, 1)
            if options is not None:
                mean, std = _floats(options, 0), _floats(options, 1)
    value_max = value_min = None
    stats = _table(tensor, 5)
    if stats is not None:
        value_max, value_min = _floats(stats, 0), _floats(stats, 1)
    return InputMetadata(name=_string(tensor, 0), color=color, size=size, mean=mean, std=std,
                         value_min=value_min, value_max=value_max)
