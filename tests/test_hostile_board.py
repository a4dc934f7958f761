"""A board that lies at the frame level (issue 22): `k210 hil` against tests/boardfakes/hostile_board.py, a
test per lie. The honest outcome is never a PASS for a lie about results, always a clean exit (one line on
stderr, a documented code) within a bounded time, and bounded host memory.

The board under test and the golden board are the same Python runner (the arithmetic stand-in for the
KPU); only the relay in front of the board under test lies. A run of 20 images takes about 2 s.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from boardfakes.arith_model import make_arith_kmodel
from boardfakes.links import InProcessPort, in_process_board

from k210.firmware import k210wire as w
from k210.host.hil.channel import LOGS_KEPT
from k210.host.hil.client import BoardClient
from k210.host.hil.hello_check import check_hello
from k210.host.hil.messages import Hello

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "boardfakes" / "hostile_board.py"
INPUT_LEN = 784
IMAGES = 20
BOUND_S = 60.0  # the longest a run against any of these boards may take (an honest one: ~2 s)


@pytest.fixture(scope="module")
def kmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "arith.kmodel"
    path.write_bytes(make_arith_kmodel(version=5, input_len=INPUT_LEN))
    return path


def board(lie: str = "honest", stats: Path | None = None) -> str:
    return shlex.join([sys.executable, str(HOSTILE), "--lie", lie, *(["--stats", str(stats)] if stats else [])])


def hil(kmodel: Path, lie: str, *extra: str, stats: Path | None = None) -> tuple[int, dict, str, float]:
    """`k210 hil` as a user runs it, the lying board against an honest golden one: (code, envelope, stderr, s)."""
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "k210.host.cli", "hil", str(kmodel), "--board-cmd",
                               board(lie, stats), "--golden-board-cmd", board(), "--upload", "--dataset", "random",
                               "--limit", str(IMAGES), "--connect-timeout", "30", "--json", *extra],
                              capture_output=True, text=True, timeout=BOUND_S, cwd=REPO.parent)
    except subprocess.TimeoutExpired:
        pytest.fail(f"k210 hil against a board that lies ({lie}) ran past {BOUND_S:g} s")
    seconds = time.monotonic() - started
    envelope = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, envelope, done.stderr, seconds


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_the_honest_board_passes(kmodel):
    code, envelope, stderr, seconds = hil(kmodel, "honest")
    assert code == 0 and envelope["passed"] and envelope["result"]["count"] == IMAGES, stderr


# -- lies about results: never a PASS (the verdict is issue 20's; these say what it must give) ------------


@pytest.mark.parametrize("lie", ["zero-outputs", "replay", "wrong-values", "wrong-shape", "wrong-dtype"])
def test_a_board_that_lies_about_its_results_never_passes(kmodel, lie):
    code, envelope, stderr, _ = hil(kmodel, lie)
    assert code == 1 and envelope["exit_code"] == 1 and envelope["passed"] is False, (code, stderr)
    assert one_line(stderr).startswith("k210 hil: check failed:")


def test_a_result_that_never_ends_is_a_clean_failure(kmodel):
    """The first RESULT declares 1 GiB and comes in overlapping parts without end: waiting for the rest for ever,
    and keeping every part, are both wrong."""
    code, envelope, stderr, _ = hil(kmodel, "result-flood")
    assert code == 3 and envelope.get("passed") is False, (code, stderr)
    one_line(stderr)


# -- lies in HELLO: refused naming the field, or respected -----------------------------------------------------


@pytest.mark.parametrize(("lie", "field"), [("tiny-frame", "max_frame 22 bytes"), ("tiny-window", "rx_window 100"),
                                            ("no-input", "max_input 0"), ("bad-caps", "caps 0x1400")])
def test_a_hello_the_host_cannot_work_with_is_refused_naming_the_field(kmodel, lie, field):
    code, envelope, stderr, seconds = hil(kmodel, lie)
    line = one_line(stderr)
    assert code == 3 and envelope["exit_code"] == 3 and envelope["passed"] is False, stderr
    assert f"the board's HELLO says {field}" in line and seconds < BOUND_S


def test_a_reset_whose_hello_changes_the_fields_is_checked_again(kmodel):
    code, envelope, stderr, seconds = hil(kmodel, "reset-shrinks")
    line = one_line(stderr)
    assert code == 3 and envelope["passed"] is False and "the board's HELLO says max_frame 22" in line, stderr


def test_a_board_error_text_cannot_break_the_one_line_or_the_terminal(kmodel):
    code, envelope, stderr, _ = hil(kmodel, "escape-error")
    line = one_line(stderr)
    assert code == 3 and envelope["passed"] is False and "INFER_FAILED" in line and "boom?second line?[2J" in line
    assert "\x1b" not in stderr and "\x07" not in stderr and "\r" not in stderr


def test_a_small_rx_window_is_respected(kmodel, tmp_path):
    stats = tmp_path / "stats.json"
    code, envelope, stderr, _ = hil(kmodel, "small-window", stats=stats)
    assert code == 0 and envelope["passed"], stderr
    seen = json.loads(stats.read_text())
    # rx_window 300 with max_frame 1024: no frame the board could not hold (it would have been lost).
    assert seen["largest_host_frame"] <= 300 and seen["dropped_host_frames"] == 0, seen
    assert envelope["result"]["boards"][0]["window"] <= 300


def test_huge_hello_fields_are_capped_not_trusted(kmodel, tmp_path):
    stats = tmp_path / "stats.json"
    code, envelope, stderr, seconds = hil(kmodel, "huge-fields", stats=stats)
    assert code == 0 and envelope["passed"] and seconds < BOUND_S, stderr
    assert json.loads(stats.read_text())["largest_host_frame"] <= 65536 + 300


def test_frame_limits_from_hello_fields():
    def hello(max_frame: int = 1024, rx_window: int = 4096, max_input: int = 4096, caps: int = 0) -> Hello:
        return Hello(1, max_frame, rx_window, 1, 0, max_input, 0, 0, (3, 4, 5), "f", "1", "b", caps)

    assert hello().frame_limit == 1024 and hello().chunk_size == 1024 - 22
    assert w.cobs_max_encoded(hello(rx_window=300).frame_limit) + 1 == 300  # the largest frame 300 bytes hold
    assert hello(max_frame=0xFFFFFFFF, rx_window=0xFFFFFFFF).frame_limit == 1 << 16
    for bad, field in ((hello(max_frame=22), "max_frame"), (hello(rx_window=100), "rx_window"),
                       (hello(max_input=0), "max_input"), (hello(caps=w.CAP_CACHE | 60 << 8), "caps")):
        with pytest.raises(Exception, match=f"HELLO says {field}"):
            check_hello(bad, "b")
    check_hello(hello(rx_window=130, caps=w.CAP_CACHE | 20 << 8), "b")  # the smallest window that works
    with pytest.raises(Exception, match="HELLO says rx_window 129"):
        check_hello(hello(rx_window=129), "b")


# -- LOG floods: memory bounded, the terminal not flooded -----------------------------------------------------


def test_a_log_flood_neither_fills_memory_nor_the_terminal(kmodel):
    code, envelope, stderr, seconds = hil(kmodel, "log-flood")
    assert code == 0 and envelope["passed"] and seconds < BOUND_S, stderr
    assert "flood" not in stderr and "\x1b" not in stderr  # nothing of the board's text reached stderr


class FloodingPort(InProcessPort):
    """The in-process board, with `per_write` LOG frames (terminal escapes, newlines) after each reply."""

    def __init__(self, per_write: int) -> None:
        super().__init__()
        self.per_write = per_write
        self.sent = 0

    def write(self, data: bytes) -> int:
        n = super().write(data)
        for _ in range(self.per_write):
            self.sent += 1
            text = f"\x1b[2Jline {self.sent}\nfake Traceback" + "y" * 200
            self.board_send(w.encode_frame(w.LOG, w.FLAG_EVENT, self.sent & 0xFFFF,
                                           w.encode_payload(w.LOG, {"level": w.LOG_ERROR, "text": text})))
        return n


def test_the_channel_keeps_the_last_logs_and_counts_the_rest():
    port = FloodingPort(per_write=0)
    runner, _ = in_process_board()
    runner.send = port.board_send
    port.runner = runner
    client = BoardClient(port)
    client.hello()
    client.load_model(make_arith_kmodel(version=5, input_len=16))
    port.per_write = 200
    tracemalloc.start()
    try:
        for i in range(100):
            outputs, _ = client.infer(bytes(range(i, i + 16)))
            assert outputs[0].data == bytes(((b * 3 + 7) & 0xFF) for b in range(i, i + 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    channel = client.session.channel
    assert port.sent >= 20_000 and channel.logs_seen == port.sent
    assert len(channel.logs) == LOGS_KEPT and channel.logs_dropped == port.sent - LOGS_KEPT
    assert peak < 3 << 20, peak  # 20 000 lines of 220 bytes kept would be 6 MB and more as Python strings
    assert not any(ord(c) < 32 for _, text in channel.logs for c in text)  # escapes and newlines made harmless
    assert channel.logs[-1][1].startswith("?[2Jline") and "\n" not in channel.logs[-1][1]


# -- cache claims for samples never sent --------------------------------------------------------------------


def test_a_board_that_claims_samples_it_never_received_is_refused(kmodel):
    code, envelope, stderr, seconds = hil(kmodel, "cache-claims")
    line = one_line(stderr)
    assert code == 3 and envelope["passed"] is False and seconds < BOUND_S, stderr
    assert "answered a sample it was never sent" in line and "--no-cache" in line
    # Without the cache (what the error advises) every image goes with its bytes: the board computes them.
    code, envelope, stderr, _ = hil(kmodel, "cache-claims", "--no-cache")
    assert code == 0 and envelope["passed"] and envelope["result"]["boards"][0]["samples"]["cached"] == 0, stderr


def test_the_synchronous_client_bounds_a_result_that_never_ends():
    """BoardClient (scripts, runner tests) meets the same RESULT flood: bounded time and memory, one error."""
    from k210.host.hil.messages import BoardLinkError

    runner, port = in_process_board()
    client = BoardClient(port)
    client.hello()
    client.load_model(make_arith_kmodel(version=5, input_len=16))
    real_send = runner.send

    def flood(frame) -> None:
        ((_, mtype, flags, seq, payload),) = w.decode_frames(bytes(frame))
        if mtype != w.RESULT:
            real_send(frame)
            return
        f = w.decode_message(mtype, payload)
        for offset in range(3000):  # overlapping parts of a 100 kB RESULT, one byte further each: 600 kB
            part = {**f, "total": 100_000, "offset": offset, "data": bytes(200)}
            real_send(w.encode_frame(w.RESULT, flags, seq, w.encode_payload(w.RESULT, part)))

    runner.send = flood
    started = time.monotonic()
    with pytest.raises(BoardLinkError, match=r"bytes of parts for 100,000 declared"):
        client.infer(bytes(16))
    assert time.monotonic() - started < BOUND_S
