"""How a HIL session gets back on its feet; session.py and pipeline.py follow these rules.

Replies come in the order the board received the frames, so an answer to frame N means every
unanswered frame sent before N was lost (damaged on the way in, or its reply damaged on the way
out): its image is sent again as a new request (new req id and seq, so a late reply cannot be
mistaken for it). An ERROR does the same; a lost chunk makes the board answer the next ones of its
request with GAP/STALE. When the oldest frame in flight is overdue (the time its bytes needed on the
line plus a learnt reply time, timing.py), the host probes with HELLO_REQ, which also
resynchronises the board. A HELLO with a new boot nonce (announced, or found by a probe) means the
board reset: everything in flight is resent, after the model is checked and, if it is gone,
uploaded again. Each image gets a bounded number of attempts; a board that resets without end
fails the session.
"""

from __future__ import annotations

from .messages import Hello


class BoardRestarted(Exception):
    """The board sent a HELLO with a new boot nonce: it reset and forgot its session."""

    def __init__(self, hello: Hello) -> None:
        super().__init__(f"board reset (nonce {hello.nonce:#010x})")
        self.hello = hello


class Resync(Exception):
    """Nothing useful came back in time, or the board lost its model: probe and recover."""


class UploadRestart(Exception):
    """The board dropped the upload (it no longer knows it): begin again."""
