"""What a board's HELLO may say: every field checked before the host plans a byte by it (issue 22).

A HELLO is the board's word on how big a frame it takes, how much it can hold while busy and what
else it offers. A broken or hostile board can say anything, so a value the host cannot work with
is refused here, naming the field, as a board failure (exit 3): a max_frame too small for a chunk
of data would have the host send empty chunks for ever. Values that can work but disagree (an RX
window smaller than max_frame) are respected, not refused: frames are sized to what the board
says it can hold (Hello.frame_limit). Its texts reach the host made printable (channel.py).
"""

from __future__ import annotations

from k210.core.errors import ToolFailure
from k210.firmware import k210wire as w

from .messages import Hello

MAX_CACHE_LOG2 = 40  # a sample cache of 1 TiB is already far beyond any card in a K210 board


def check_hello(hello: Hello, board: str) -> None:
    """Raise a one-line ToolFailure naming the first HELLO field the host cannot work with."""

    def refuse(field: str, why: str) -> None:
        raise ToolFailure(f"{board}: the board's HELLO says {field} {why}; refusing it (a broken or wrong runner?)")

    if hello.max_frame < w.MIN_MAX_FRAME:
        refuse("max_frame", f"{hello.max_frame} bytes: a frame must hold at least {w.MIN_MAX_FRAME} (header, "
                            f"CRC, a chunk header and its data, PROTOCOL.md)")
    if hello.frame_limit < w.MIN_MAX_FRAME:
        refuse("rx_window", f"{hello.rx_window} bytes: too little to hold one {w.MIN_MAX_FRAME}-byte frame")
    if hello.max_input == 0:
        refuse("max_input", "0 bytes: it could take no input tensor")
    log2 = (hello.caps >> w.CAP_CACHE_LOG2_SHIFT) & 0xFF
    if log2 and not hello.caps & w.CAP_CACHE:
        refuse("caps", f"{hello.caps:#06x}: a sample cache size without the CACHE bit")
    if hello.caps & w.CAP_CACHE and log2 > MAX_CACHE_LOG2:
        refuse("caps", f"{hello.caps:#06x}: a sample cache of 2^{log2} bytes")
