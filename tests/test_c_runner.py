"""The host build of the C runner (firmware/c: core + arithmetic backend) completes scripted sessions
with the Python host (BoardClient) over a pseudo-terminal, including a noisy link and a reboot."""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.links import NoisyPort, build_c, require_tool, start_pty_board, stop

from k210.firmware import k210wire as w
from k210.host.hil.client import BoardClient
from k210.host.hil.messages import BoardError


@pytest.fixture(scope="module")
def runner_exe() -> Path:
    require_tool("gcc")
    return build_c("host") / "k210_runner_host"


@pytest.fixture
def board(runner_exe: Path) -> Iterator[tuple[subprocess.Popen, serial.Serial]]:
    proc, path = start_pty_board([str(runner_exe), "--pty", "--max-frame", "512", "--max-input", "4096"])
    port = serial.Serial(path, 1_500_000, timeout=0.02)
    yield proc, port
    port.close()
    stop(proc)


def check_infer(link: BoardClient, x: bytes, mul: int = 3, add: int = 7) -> int:
    outputs, micros = link.infer(x)
    out0, total = arith_outputs(x, mul, add)
    assert [(o.dtype, o.shape) for o in outputs] == [(w.DT_UINT8, (len(x),)), (w.DT_FLOAT32, (1,))]
    assert outputs[0].data == out0
    assert outputs[1].to_numpy().tolist() == [total]
    return micros


def test_scripted_session(board: tuple[subprocess.Popen, serial.Serial]) -> None:
    _, port = board
    link = BoardClient(port, reply_timeout=0.3)
    hello = link.hello()
    assert (hello.proto, hello.backend, hello.firmware) == (1, "c-host-arith", "k210-deploy-c")
    assert hello.kmodel_versions == (3, 4, 5) and hello.max_frame == 512 and hello.chunk_size == 512 - 22
    assert not link.model_info().loaded

    with pytest.raises(BoardError) as err:
        link.infer(b"\x00" * 10)
    assert err.value.name == "NO_MODEL"

    model = make_arith_kmodel(version=5, mul=5, add=11, input_len=784, pad=6000)
    info = link.load_model(model, inputs=[(w.DT_UINT8, (1, 784))], outputs=[(w.DT_FLOAT32, (1, 2))])
    assert info.loaded and info.kmodel_version == 5 and info.source == "upload"
    assert info.sha256 == hashlib.sha256(model).hexdigest() and info.size == len(model)
    assert [d.shape for d in info.inputs] == [(784,)]  # the backend's own descriptors win
    assert link.model_info() == info

    rng = random.Random(4)
    for _ in range(5):
        micros = check_infer(link, bytes(rng.randrange(256) for _ in range(784)), mul=5, add=11)
        assert 0 <= micros < 1_000_000

    with pytest.raises(BoardError) as err:
        link.infer(b"\x01" * 100)
    assert (err.value.name, err.value.detail) == ("BAD_SIZE", 784)
    with pytest.raises(BoardError) as err:
        link.load_model(b"LDMK\x06\x00\x00\x00" + bytes(40))
    assert (err.value.name, err.value.detail) == ("UNSUPPORTED_KMODEL", 6)
    with pytest.raises(BoardError) as err:
        link.load_model(b"LDMK\x05\x00\x00\x00" + b"not arith" + bytes(30))
    assert err.value.name == "LOAD_FAILED"
    assert link.stats.retries == 0


def test_noisy_link_and_resync(board: tuple[subprocess.Popen, serial.Serial]) -> None:
    _, port = board
    port.write(b"\x13\x37garbage before anything\x00\x01\x02")  # noise on the line before the host speaks
    plan = {2: "corrupt", 4: "drop", 5: "dup", 7: "garbage", 9: "corrupt", 12: "dup", 15: "drop", 18: "garbage"}
    noisy = NoisyPort(port, plan)
    link = BoardClient(noisy, reply_timeout=0.2)
    link.hello()
    model = make_arith_kmodel(input_len=700, pad=4000)
    assert link.load_model(model).sha256 == hashlib.sha256(model).hexdigest()
    for i in range(4):
        check_infer(link, bytes((i * 31 + j) & 0xFF for j in range(700)))
    assert not noisy.plan, "every planned fault was applied"
    assert link.stats.retries >= 4
    hello = link.hello()
    assert hello.rx_dropped >= 4  # the board counted the damaged frames it dropped


def test_reboot_gives_a_new_nonce_and_forgets_the_upload(board: tuple[subprocess.Popen, serial.Serial]) -> None:
    _, port = board
    link = BoardClient(port, reply_timeout=0.3)
    first = link.hello()
    link.load_model(make_arith_kmodel(input_len=16))
    after = link.reboot()
    assert after.nonce != first.nonce
    assert not link.model_info().loaded


def test_boot_model_from_file(runner_exe: Path, tmp_path: Path) -> None:
    model = make_arith_kmodel(version=4, mul=1, add=1, input_len=32)
    (tmp_path / "boot.kmodel").write_bytes(model)
    proc, path = start_pty_board([str(runner_exe), "--pty", "--model", str(tmp_path / "boot.kmodel")])
    try:
        with serial.Serial(path, 1_500_000, timeout=0.02) as port:
            link = BoardClient(port, reply_timeout=0.3)
            info = link.model_info()
            assert (info.loaded, info.source, info.kmodel_version) == (True, "file", 4)
            assert info.sha256 == hashlib.sha256(model).hexdigest()
            check_infer(link, bytes(range(32)), mul=1, add=1)
    finally:
        stop(proc)


def test_stdio_transport(runner_exe: Path) -> None:
    proc = subprocess.Popen([str(runner_exe), "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write(w.encode_frame(w.HELLO_REQ, 0, 5, b""))
        proc.stdin.close()  # EOF: the runner answers what it has, then exits
        out = proc.stdout.read()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    frames = w.decode_frames(out)
    assert [(t, f, s) for _, t, f, s, _ in frames] == [(w.HELLO, w.FLAG_EVENT, 0), (w.HELLO, w.FLAG_REPLY, 5)]


def test_runner_keeps_up_with_a_burst(board: tuple[subprocess.Popen, serial.Serial]) -> None:
    """Pipelining hook: several requests written back to back, replies matched by seq afterwards."""
    _, port = board
    link = BoardClient(port, reply_timeout=0.3)
    link.hello()
    link.load_model(make_arith_kmodel(input_len=64))
    seqs = {}
    for req in range(1, 9):
        x = bytes([req]) * 64
        payload = w.encode_payload(w.INFER_CHUNK, {"req": req, "total": 64, "offset": 0, "data": x})
        seqs[link.send_request(w.INFER_CHUNK, payload)] = req
    results: dict[int, dict] = {}
    deadline = time.monotonic() + 5
    while len(results) < 8 and time.monotonic() < deadline:
        for msg in link.poll_replies(0.1):
            if msg.type == w.RESULT:
                results[seqs[msg.seq]] = msg.fields
    assert sorted(results) == list(range(1, 9))
    for req, fields in results.items():
        (_, _, out0), _ = w.parse_result_blob(fields["data"], fields["n_outputs"])
        assert fields["req"] == req and out0 == arith_outputs(bytes([req]) * 64, 3, 7)[0]


def test_boot_model_problem_is_reported_after_hello(runner_exe: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.kmodel").write_bytes(b"LDMK\x05\x00\x00\x00" + bytes(30))
    proc, path = start_pty_board([str(runner_exe), "--pty", "--model", str(tmp_path / "bad.kmodel")])
    try:
        with serial.Serial(path, 1_500_000, timeout=0.02) as port:
            link = BoardClient(port, reply_timeout=0.3)
            link.hello()
            assert not link.model_info().loaded
            levels = {level for level, text in link.stats.logs if "boot model" in text}
            assert levels == {3}  # once at boot (if the host was listening) and after the HELLO reply
    finally:
        stop(proc)
