"""One preprocessing spec from uint8 pixels to a model's input, used by every stage alike.

Calibration, the TF reference, the simulator, `k210 hil` and the board's config all take their
inputs through the same :class:`Preprocess`, kept in the model card (``preprocessing.spec``):

    pixels  uint8 [N, H, W, C] (RGB or grayscale, resized to the model's H x W)
    float   x = low + pixels / 255 * (high - low)          (input_range)
            x = (x - mean[c]) / std[c]                     (per channel; 0 and 1 by default)
    layout  NHWC, or NCHW when the model takes channels first

A kmodel compiled with a uint8 input gets the raw pixels: nncase's own preprocessing applies
input_range, mean and std on the board. A float32 input gets the float tensor above.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from k210.core.errors import BadInputError

COLORS = ("rgb", "grayscale")
LAYOUTS = ("NHWC", "NCHW")
DTYPES = ("uint8", "float32")
RESIZES = ("bilinear", "nearest", "letterbox", "none")  # "none": images must already have the model's size
# letterbox: keep the aspect ratio (bilinear), centre the image and pad the rest with `pad` (MediaPipe's way)


@dataclass(frozen=True)
class Preprocess:
    height: int
    width: int
    channels: int  # 1 or 3
    input_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NHWC"
    dtype: str = "float32"  # what the kmodel takes (and the board sends): uint8 pixels or float32
    resize: str = "bilinear"
    pad: int = 0  # the pixel value letterbox pads with (0..255, every channel)

    @property
    def color(self) -> str:
        return "rgb" if self.channels == 3 else "grayscale"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def validate(self) -> Preprocess:
        if self.channels not in (1, 3):
            raise BadInputError(f"preprocessing: {self.channels} channels; images are RGB (3) or grayscale (1)")
        if self.height < 1 or self.width < 1:
            raise BadInputError(f"preprocessing: image size {self.height}x{self.width} is empty")
        lo, hi = self.input_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise BadInputError(f"input range {lo:g},{hi:g} is empty or not finite (want LOW < HIGH)")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise BadInputError(f"--{name} has {len(values)} values but the model takes {self.channels} "
                                    f"channel(s): give 1 or {self.channels}")
            if not all(math.isfinite(v) for v in values):
                raise BadInputError(f"--{name} values must be finite numbers")
        if any(v <= 0 for v in self.std):
            raise BadInputError("--std values must be positive")
        if not 0 <= self.pad <= 255:
            raise BadInputError(f"--pad-value {self.pad} is not a pixel value (0..255)")
        for name, value, allowed in (("layout", self.layout, LAYOUTS), ("dtype", self.dtype, DTYPES),
                                     ("resize", self.resize, RESIZES)):
            if value not in allowed:
                raise BadInputError(f"preprocessing {name} '{value}' is not one of {', '.join(allowed)}")
        return self

    # --- pixels -> what each stage takes ------------------------------------------------------

    def to_float(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] -> float32 model input (input range, mean/std, layout)."""
        pixels = self.check_pixels(pixels)
        lo, hi = self.input_range
        x = pixels.astype(np.float32) / np.float32(255.0)
        if (lo, hi) != (0.0, 1.0):
            x = x * np.float32(hi - lo) + np.float32(lo)
        if any(self.mean) or any(v != 1.0 for v in self.std):
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return self._layout(x.astype(np.float32))

    def to_kmodel(self, pixels: np.ndarray) -> np.ndarray:
        """What the kmodel (and the board) takes: raw pixels for a uint8 input, else :meth:`to_float`."""
        if self.dtype == "uint8":
            return self._layout(self.check_pixels(pixels))
        return self.to_float(pixels)

    def check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        if pixels.ndim == 3 and self.channels == 1:
            pixels = pixels[..., None]
        if pixels.dtype != np.uint8:
            raise BadInputError(f"pixels must be uint8, got {pixels.dtype}")
        if pixels.ndim != 4 or pixels.shape[1:] != self.image_shape:
            raise BadInputError(f"images {list(pixels.shape[1:])} do not fit the model's "
                                f"{self.height}x{self.width}x{self.channels} ({self.color}) input")
        return np.ascontiguousarray(pixels)

    def _layout(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.layout == "NCHW" else x

    def from_float_tensors(self, tensors: np.ndarray) -> np.ndarray:
        """Float arrays the user gave as model inputs, checked against the spec's shape (not transformed)."""
        tensors = np.asarray(tensors)
        want = self.tensor_shape
        if tensors.shape[1:] != want:
            if int(np.prod(tensors.shape[1:])) == int(np.prod(want)) and tensors.ndim == 2:
                tensors = tensors.reshape(len(tensors), *want)
            else:
                raise BadInputError(f"arrays {list(tensors.shape[1:])} do not fit the model input {list(want)}")
        return np.ascontiguousarray(tensors, np.float32)

    @property
    def tensor_shape(self) -> tuple[int, int, int]:
        h, w, c = self.image_shape
        return (c, h, w) if self.layout == "NCHW" else (h, w, c)

    # --- the model card ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(color=self.color, input_range=list(self.input_range), mean=list(self.mean), std=list(self.std))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        try:
            return cls(
                height=int(data["height"]), width=int(data["width"]), channels=int(data["channels"]),
                input_range=tuple(float(v) for v in data.get("input_range", (0.0, 1.0))),  # type: ignore[arg-type]
                mean=tuple(float(v) for v in data.get("mean", (0.0,))),
                std=tuple(float(v) for v in data.get("std", (1.0,))),
                layout=str(data.get("layout", "NHWC")), dtype=str(data.get("dtype", "float32")),
                resize=str(data.get("resize", "bilinear")), pad=int(data.get("pad", 0)),
            ).validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"the model card's preprocessing spec is unreadable: {exc}") from None

    def describe(self) -> str:
        lo, hi = self.input_range
        resize = f"letterbox (pad {self.pad})" if self.resize == "letterbox" else self.resize
        text = (f"{self.height}x{self.width} {self.color}, resize {resize}, pixels 0..255 -> {lo:g}..{hi:g}")
        if any(self.mean) or any(v != 1.0 for v in self.std):
            text += f", then (x - {_fmt(self.mean)}) / {_fmt(self.std)}"
        board = "raw uint8 pixels (nncase applies the rest)" if self.dtype == "uint8" else "float32 tensors"
        return f"{text}, {self.layout}; the board takes {board}"


def _fmt(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(values) == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"


@dataclass(frozen=True)
class Overrides:
    """What the user asked for on the command line; None = keep the card's (or the default)."""

    input_range: tuple[float, float] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color: str | None = None
    resize: str | None = None
    pad: int | None = None
    force: bool = False  # --force-preprocessing: the flags win over the model's own metadata


def image_geometry(input_shape: list[int] | tuple[int, ...]) -> tuple[int, int, int, str]:
    """(height, width, channels, layout) of a model input shape with batch 1.

    [1, H, W, C] is NHWC unless C is not 1 or 3 and the second dimension is (then NCHW, as nncase's
    own and real-world kmodels often are); [1, H, W] is grayscale; [1, K] with K = s*s or s*s*3 is
    a flattened square image (the MLPs' 784 inputs). Anything else (features, spectrograms with many
    channels) is a 1 x K grayscale strip: random data and arrays of its shape fit it.
    """
    dims = [int(d) for d in input_shape]
    if not dims or dims[0] != 1 or any(d < 1 for d in dims):
        raise BadInputError(f"model input {dims} has no fixed batch of 1")
    rest = dims[1:]
    if len(rest) == 3:
        if rest[2] in (1, 3):
            return rest[0], rest[1], rest[2], "NHWC"
        if rest[0] in (1, 3):
            return rest[1], rest[2], rest[0], "NCHW"
    elif len(rest) == 2:
        return rest[0], rest[1], 1, "NHWC"
    elif len(rest) == 1:
        for channels in (1, 3):
            side = math.isqrt(rest[0] // channels)
            if side * side * channels == rest[0]:
                return side, side, channels, "NHWC"
    return 1, math.prod(rest), 1, "NHWC"


def spec_for_model(input_shape: list[int] | tuple[int, ...], *, dtype: str = "float32",
                   card: dict[str, Any] | None = None, overrides: Overrides | None = None) -> Preprocess:
    """The spec for a model input: the card's spec if there is one, else the defaults, then the flags.

    A spec that contradicts the model (another size, channels or dtype) is a one-line BadInputError.
    """
    height, width, channels, layout = image_geometry(input_shape)
    spec = Preprocess(height, width, channels, layout=layout, dtype=dtype)
    if card:
        carded = Preprocess.from_dict(card)
        if carded.image_shape != spec.image_shape:
            raise BadInputError(f"the model card's preprocessing ({carded.height}x{carded.width}x{carded.channels}) "
                                f"contradicts the model input {list(input_shape)}")
        if carded.dtype != dtype:
            raise BadInputError(f"the model card's preprocessing sends {carded.dtype} but the kmodel takes {dtype}")
        spec = replace(carded, layout=layout)
    if overrides:
        if overrides.color and overrides.color != spec.color:
            raise BadInputError(f"--color {overrides.color} contradicts the model input {list(input_shape)} "
                                f"({spec.channels} channel(s): {spec.color})")
        changes: dict[str, Any] = {k: v for k, v in (("input_range", overrides.input_range), ("mean", overrides.mean),
                                                     ("std", overrides.std), ("resize", overrides.resize),
                                                     ("pad", overrides.pad))
                                   if v is not None}
        spec = replace(spec, **changes)
    return spec.validate()


# --- images -> pixels --------------------------------------------------------------------------


def fit_image(image: Any, spec: Preprocess, what: str) -> np.ndarray:
    """One Pillow image -> uint8 [H, W, C] in the spec's colour mode and size."""
    from PIL import Image

    image = image.convert("RGB" if spec.channels == 3 else "L")
    if image.size != (spec.width, spec.height):
        if spec.resize == "none":
            raise BadInputError(f"{what} is {image.size[0]}x{image.size[1]}, the model takes "
                                f"{spec.width}x{spec.height} and resizing is off (--resize none)")
        if spec.resize == "letterbox":
            image = letterbox(image, spec)
        else:
            method = Image.Resampling.BILINEAR if spec.resize == "bilinear" else Image.Resampling.NEAREST
            image = image.resize((spec.width, spec.height), method)
    pixels = np.asarray(image, np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def letterbox(image: Any, spec: Preprocess) -> Any:
    """Scale to fit inside the model's size keeping the aspect ratio, centre, pad with `spec.pad`."""
    from PIL import Image

    scale = min(spec.width / image.size[0], spec.height / image.size[1])
    width = max(1, min(spec.width, round(image.size[0] * scale)))
    height = max(1, min(spec.height, round(image.size[1] * scale)))
    canvas = Image.new(image.mode, (spec.width, spec.height), (spec.pad,) * 3 if image.mode == "RGB" else spec.pad)
    canvas.paste(image.resize((width, height), Image.Resampling.BILINEAR),
                 ((spec.width - width) // 2, (spec.height - height) // 2))
    return canvas


# --- what the model says about its own input ----------------------------------------------------


def affine(spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (scale, offset) of pixel -> model input: two specs with equal ones preprocess alike."""
    lo, hi = spec.input_range
    mean = np.broadcast_to(np.asarray(spec.mean, np.float64), (spec.channels,))
    std = np.broadcast_to(np.asarray(spec.std, np.float64), (spec.channels,))
    return (hi - lo) / 255.0 / std, (lo - mean) / std


def same_mapping(a: Preprocess, b: Preprocess) -> bool:
    (sa, oa), (sb, ob) = affine(a), affine(b)
    return bool(np.allclose(sa, sb, rtol=1e-5, atol=1e-9) and np.allclose(oa, ob, rtol=1e-5, atol=1e-6))


def with_metadata(spec: Preprocess, metadata: Any, overrides: Overrides | None) -> tuple[Preprocess, str | None]:
    """`spec` (defaults and flags applied) checked against the model's metadata (converters.tflite_metadata).

    No flags: the metadata's normalisation becomes the spec. Flags that preprocess differently from the
    metadata are refused (BadInputError, naming both) unless `overrides.force`. Returns the spec and
    where its normalisation came from ("metadata", "flags", "flags over metadata") or None.
    """
    derived = metadata.input_range() if metadata is not None else None
    if metadata is not None and metadata.color and metadata.color != spec.color:
        raise BadInputError(f"the model's metadata says its input is {metadata.color}, the model takes "
                            f"{spec.channels} channel(s)")
    if derived is None:
        return spec, None
    input_range, mean, std = derived
    from_metadata = replace(spec, input_range=input_range, mean=mean, std=std).validate()
    flagged = overrides is not None and any(v is not None for v in (overrides.input_range, overrides.mean,
                                                                      overrides.std))
    if not flagged:
        return from_metadata, "metadata"
    if same_mapping(spec, from_metadata):
        return spec, "flags"
    if overrides is not None and overrides.force:
        return spec, "flags over metadata"
    raise BadInputError(f"the preprocessing flags ({_mapping_text(spec)}) contradict the model's own metadata "
                        f"({metadata.describe()}: {_mapping_text(from_metadata)}): drop the flags, or pass "
                        "--force-preprocessing to use them anyway")


def _mapping_text(spec: Preprocess) -> str:
    lo, hi = spec.input_range
    text = f"pixels 0..255 -> {lo:g}..{hi:g}"
    if any(spec.mean) or any(v != 1.0 for v in spec.std):
        text += f", then (x - {_fmt(spec.mean)}) / {_fmt(spec.std)}"
    return text
