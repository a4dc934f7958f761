"""What the host and a board say to each other (firmware/PROTOCOL.md), as Python values, and the
errors a board can answer with. Shared by the HIL session and the synchronous client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k210.core.errors import ToolFailure
from k210.firmware import k210wire as w

HOST_MAX_FRAME = 1 << 16  # largest frame the host accepts; boards announce max_frame <= this
MAX_RX_WINDOW = 1 << 20  # the most of a board's announced RX window the host fills (a K210 has 6 MiB of SRAM)


class BoardLinkError(ToolFailure):
    """The board did not answer as the protocol says."""


class BoardTimeout(BoardLinkError):
    """No reply within the session's patience."""


class BoardReset(BoardLinkError):
    """The board rebooted (an unsolicited HELLO with a new nonce): uploaded models are gone."""

    def __init__(self, hello: Hello):
        super().__init__(f"board reset (new boot nonce {hello.nonce:#010x}); its uploaded model is gone")
        self.hello = hello


class BoardError(BoardLinkError):
    """The board answered ERROR."""

    def __init__(self, code: int, detail: int, text: str, req: int = 0):
        name = w.ERROR_NAMES.get(code, str(code))
        super().__init__(f"board error {name}: {text}")
        self.code = code
        self.name = name
        self.detail = detail
        self.text = text
        self.req = req


_CONTROLS = {c: "?" for c in (*range(0x20), *range(0x7F, 0xA0))}  # C0, DEL and C1: newlines, terminal escapes


def printable(text: str) -> str:
    """A board's text as one safe line: control characters (newlines, terminal escapes) become '?'."""
    return text.translate(_CONTROLS)


@dataclass(frozen=True)
class TensorDesc:
    dtype: int
    shape: tuple[int, ...]

    @property
    def dtype_name(self) -> str:
        return w.DTYPE_NAMES.get(self.dtype, f"dtype{self.dtype}")

    @property
    def nbytes(self) -> int:
        return w.tensor_nbytes(self.dtype, self.shape)


@dataclass(frozen=True)
class Tensor:
    dtype: int
    shape: tuple[int, ...]
    data: bytes

    def to_numpy(self) -> Any:
        import numpy as np

        dtypes = {0: np.int8, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.uint8, 5: np.uint16, 6: np.uint32,
                  7: np.uint64, 8: np.float16, 9: np.float32, 10: np.float64}
        array = np.frombuffer(self.data, dtype=np.dtype(dtypes[self.dtype]).newbyteorder("<"))
        return array.reshape(self.shape) if self.shape else array


@dataclass(frozen=True)
class Hello:
    proto: int
    max_frame: int
    rx_window: int
    nonce: int
    max_model: int
    max_input: int
    rx_frames: int
    rx_dropped: int
    kmodel_versions: tuple[int, ...]
    firmware: str
    fw_version: str
    backend: str
    caps: int = 0  # w.CAP_* bits and the sample cache's size (PROTOCOL.md 3.1); 0 on older runners

    @property
    def cache_bytes(self) -> int:
        """Bytes of samples the board keeps at least (a power of two at or below its cache; 0: no cache)."""
        if not self.caps & w.CAP_CACHE:
            return 0
        return 1 << ((self.caps >> w.CAP_CACHE_LOG2_SHIFT) & 0xFF)

    @property
    def frame_limit(self) -> int:
        """Largest frame (decoded bytes) the host sends: within the board's max_frame, the host's own limit,
        and the board's RX window once COBS-encoded with its delimiter (a board that holds 100 bytes while
        busy must not be sent frames of 700)."""
        room = min(self.rx_window, MAX_RX_WINDOW) - 1  # the 0x00 delimiter
        fits = max(0, room - 1 - room // 255)  # cobs_max_encoded(n) = n + n // 254 + 1 <= room
        while fits > 0 and w.cobs_max_encoded(fits) > room:
            fits -= 1
        return min(self.max_frame, HOST_MAX_FRAME, fits)

    @property
    def chunk_size(self) -> int:
        """Largest data bytes per LOAD/INFER chunk that fit the board's frames."""
        return self.frame_limit - w.CHUNK_OVERHEAD

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> Hello:
        return cls(f["proto"], f["max_frame"], f["rx_window"], f["nonce"], f["max_model"], f["max_input"],
                   f["rx_frames"], f["rx_dropped"], tuple(f["kmodel_versions"]), f["firmware"], f["fw_version"],
                   f["backend"], f.get("caps", 0))


@dataclass(frozen=True)
class ModelInfo:
    loaded: bool
    kmodel_version: int
    size: int
    sha256: str
    source: str
    inputs: tuple[TensorDesc, ...]
    outputs: tuple[TensorDesc, ...]

    @property
    def input_bytes(self) -> int:
        return sum(d.nbytes for d in self.inputs)

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> ModelInfo:
        return cls(bool(f["loaded"]), f["kmodel_version"], f["size"], f["sha256"], f["source"],
                   tuple(TensorDesc(d, tuple(s)) for d, s in f["inputs"]),
                   tuple(TensorDesc(d, tuple(s)) for d, s in f["outputs"]))


@dataclass(frozen=True)
class Message:
    type: int
    flags: int
    seq: int
    fields: dict[str, Any]

    @property
    def name(self) -> str:
        return w.TYPE_NAMES.get(self.type, f"0x{self.type:02x}")

    @property
    def is_event(self) -> bool:
        return bool(self.flags & w.FLAG_EVENT)


