"""What the streaming pipeline and the uploader need of a board session, and the session's counters.

Kept apart from session.py so that pipeline.py and upload.py, which session.py drives, never import it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .channel import Channel
from .framesize import FrameSizer
from .messages import Hello, Message
from .model import KModel
from .timing import ReplyTimer


@dataclass
class SessionStats:
    retries: int = 0  # frames sent again: images, upload chunks, control requests
    resets: int = 0
    resyncs: int = 0
    uploads: int = 0
    stale_replies: int = 0
    wrong_req_results: int = 0  # RESULT parts naming another request than the one they answer: ignored
    max_in_flight: int = 0  # most frames unanswered at once while streaming
    images: int = 0
    stream_seconds: float = 0.0
    bytes_to_board: int = 0  # while streaming (uploads after resets included)
    bytes_from_board: int = 0
    waits: int = 0  # times the board went quiet and the host kept asking until it answered
    waited_s: float = 0.0  # seconds spent in those waits, all together
    longest_wait_s: float = 0.0


class SessionLink(Protocol):
    """A board session as its pipeline and uploader see it (BoardSession is one)."""

    name: str
    channel: Channel
    stats: SessionStats
    timer: ReplyTimer
    max_attempts: int
    hello: Hello | None

    @property
    def sizer(self) -> FrameSizer: ...

    @property
    def upload_sizer(self) -> FrameSizer: ...

    def window(self) -> int: ...

    def overdue(self, due: float, now: float, timer: ReplyTimer | None = None) -> bool: ...

    def on_event(self, msg: Message) -> None: ...

    def upload_call(self, mtype: int, payload: bytes, expect: tuple[int, ...],
                    work: tuple[int, float] | None = None) -> Message: ...

    def upload_refused(self, fields: dict, kmodel: KModel | None) -> Exception: ...
