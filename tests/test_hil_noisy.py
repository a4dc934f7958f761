"""A noisy line is diagnosed as one (issue 23): what arrives is counted, and a timeout says how much of
it arrives damaged and what to do, instead of "the board stopped answering"; the host keeps asking
for --patience (not two tries ten seconds apart).
"""

from __future__ import annotations

import re

import pytest
from hil_support import FakePort
from test_hil_faults import _payloads, _same_as_clean, _stream

from k210.core.errors import ToolFailure
from k210.firmware import k210wire as w
from k210.host.hil.linehealth import LineCount, damage_phrase
from k210.host.hil.ports import open_port
from k210.host.hil.report import board_troubles
from k210.host.hil.session import BoardSession

NOISY = r"the board is answering, but the line is damaging \d+ % of frames .*lower the baud rate .*USB hub"


def _log_frame(text: str, seq: int) -> bytes:
    return w.encode_frame(w.LOG, w.FLAG_REPLY | w.FLAG_EVENT, seq,
                          w.encode_payload(w.LOG, {"level": w.LOG_INFO, "text": text}))


def _damaged(frame: bytes) -> bytes:
    data = bytearray(frame)
    data[len(data) // 2] ^= 0x5A  # a byte flipped mid-frame: a bad CRC or a COBS error
    return bytes(data)


def test_a_board_answering_through_a_noisy_line_is_told_from_a_silent_one():
    """A port that answers every HELLO_REQ with one whole frame and three damaged ones."""
    frames = [_log_frame(f"hello {i}", i) for i in range(4)]
    noisy = FakePort(frames[0] + b"".join(_damaged(f) for f in frames[1:]))
    try:
        session = BoardSession(open_port(noisy.path, 1_500_000), connect_timeout=0.3, patience=1.2)
        try:
            with pytest.raises(ToolFailure, match=NOISY) as caught:
                session.connect()
        finally:
            session.port.close()
    finally:
        noisy.close()
    message = str(caught.value)
    assert re.search(r"damaging 7[0-9] % of frames", message), message  # 3 of every 4
    assert re.search(r"no HELLO within 1\.[2-9] s", message), message  # --patience, not --connect-timeout
    assert "stopped answering" not in message and "not k210-deploy frames" not in message


def test_damage_is_counted_and_said_only_above_a_few_percent():
    assert damage_phrase(LineCount(bytes=9000, frames=100, bad_crc=2), 115200) == ""
    text = damage_phrase(LineCount(bytes=9000, frames=50, bad_crc=30, bad_cobs=15, cut=5), 115200)
    assert text.startswith("the line is damaging 50 % of frames (50 of 100 frames from the board arrived damaged: "
                           "30 bad CRC, 15 COBS errors, 5 cut short or overlong; 9000 bytes arrived)")
    assert "--baud, now 115200" in text


@pytest.fixture(scope="module")
def clean() -> tuple[list[bytes], dict[int, bytes]]:
    payloads = _payloads(20)
    outputs, _, _ = _stream(payloads)
    return payloads, outputs


@pytest.mark.slow
def test_one_byte_in_a_hundred_damaged_is_a_diagnosis_not_silence(clean):
    payloads, _ = clean
    with pytest.raises(ToolFailure, match=NOISY) as caught:
        _stream(payloads[:20], "corrupt=1e-2,drop=1e-2", patience=4)
    tries = re.search(r"\((\d+) tries", str(caught.value))
    assert tries is None or int(tries.group(1)) >= 3, str(caught.value)  # asked again and again within 4 s


@pytest.mark.slow
def test_half_the_chunks_twice_is_slow_but_done_and_counted(clean):
    figures = _same_as_clean(clean, 4, "dupchunk=0.5,chunk=32")
    arrived = figures["arrived"]
    assert arrived["bad_crc"] + arrived["bad_cobs"] > 0 and arrived["frames"] > 0
    assert "the line damaged" in board_troubles(figures)


def test_a_probe_after_losses_is_resent_within_patience_not_ten_seconds_apart():
    """The reply timer backs off to seconds on a lossy line; the HELLO probe's resend interval does not."""
    from k210.host.hil.session import MAX_RESEND_INTERVAL_S

    session = BoardSession(open_port("loop://", 1_500_000), connect_timeout=0.3)
    for _ in range(10):
        session.timer.timed_out()
    assert session.timer.rto > 5
    assert session._probe_wait(4000) <= MAX_RESEND_INTERVAL_S + session.port.wire_seconds(4000 + 16 + 2000)
    session.port.close()


def test_a_wait_through_damaged_answers_is_not_called_silence(caplog):
    import logging
    import time

    session = BoardSession(open_port("loop://", 1_500_000), connect_timeout=0.3)
    try:
        before = LineCount.of(session.channel)
        frames = [_log_frame(f"x{i}", i) for i in range(5)]
        session.channel._decoder.feed(frames[0] + b"".join(_damaged(f) for f in frames[1:]), lambda frame: None)
        with caplog.at_level(logging.INFO, logger="k210.hil"):
            session._note_wait(time.monotonic() - 2.0, 3, w.HELLO_REQ, before)
            session._note_wait(time.monotonic() - 2.0, 3, w.HELLO_REQ, LineCount.of(session.channel))
    finally:
        session.port.close()
    noisy, silent = [r.getMessage() for r in caplog.records if "HELLO_REQ sent 3 times" in r.getMessage()]
    assert "no whole reply came for 2.0 s: the line is damaging 80 % of frames" in noisy, noisy
    assert "the board was silent for 2.0 s" in silent, silent
