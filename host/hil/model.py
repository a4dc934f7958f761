"""The kmodel under test, and whether the one on a board is it (by hash, or by its tensors)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from k210.firmware import k210wire as w

from .messages import ModelInfo

NO_HASH = "0" * 64  # what a board reports for a model it cannot hash (a flash offset on MaixPy)


@dataclass(frozen=True)
class KModel:
    """The kmodel under test, with what the protocol needs to know about it."""

    path: str
    data: bytes
    sha256: str
    version: int
    inputs: tuple[tuple[int, tuple[int, ...]], ...]
    outputs: tuple[tuple[int, tuple[int, ...]], ...]

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> KModel:
        from k210.converters.kmodel import parse_kmodel

        info = parse_kmodel(data)
        codes = {name: code for code, name in w.DTYPE_NAMES.items()}

        def descs(tensors) -> tuple[tuple[int, tuple[int, ...]], ...]:
            return tuple((codes[t.dtype], tuple(t.shape)) for t in tensors if t.dtype in codes and t.shape)

        return cls(path, data, hashlib.sha256(data).hexdigest(), info.version, descs(info.inputs),
                   descs(info.outputs))

    @property
    def input_bytes(self) -> int:
        return sum(w.tensor_nbytes(d, s) for d, s in self.inputs)


def identify(info: ModelInfo, kmodel: KModel) -> str:
    """How the board's model is known to be `kmodel` ('sha256' or 'shapes'), or '' if it is not."""
    if not info.loaded:
        return ""
    if info.sha256 == kmodel.sha256:
        return "sha256"
    if info.sha256 != NO_HASH:  # the board knows its model's hash, and it is another one
        return ""
    board_inputs = tuple((d.dtype, tuple(d.shape)) for d in info.inputs)
    board_shapes = tuple(tuple(d.shape) for d in info.outputs)
    if board_inputs and board_inputs == kmodel.inputs and board_shapes == tuple(
            s for _, s in kmodel.outputs[: len(board_shapes)]):
        return "shapes"  # a flashed model: no hash on the board, but the tensors match
    return ""


def wrong_model_message(name: str, info: ModelInfo, kmodel: KModel) -> str:
    """Why the board's model is not `kmodel`, and what to do about it."""
    if not info.loaded:
        return f"{name}: the board has no model loaded; pass --upload to send {kmodel.path}"
    if info.sha256 == NO_HASH and not info.inputs:
        return (f"{name}: the board's model ({info.source}) has no hash or shapes to check against "
                f"{kmodel.path}; pass --upload to send it")

    def shapes(descs) -> str:
        return ", ".join(f"{w.DTYPE_NAMES.get(d, d)}{list(s)}" for d, s in descs) or "?"

    board = f"sha256 {info.sha256[:12]}…" if info.sha256 != NO_HASH else \
        f"inputs {shapes((d.dtype, d.shape) for d in info.inputs)}"
    ours = f"sha256 {kmodel.sha256[:12]}…" if info.sha256 != NO_HASH else f"inputs {shapes(kmodel.inputs)}"
    return (f"{name}: the board runs another model ({board}, {info.size} bytes, from {info.source}); "
            f"{kmodel.path} has {ours}. Pass --upload to send it")
