"""firmware/maixpy/main.py, unmodified, under CPython with stand-in MicroPython modules
(tests/boardfakes/maixpy_modules.py) on a pseudo-terminal: a session per API profile."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.links import PYTHON, REPO, NoisyPort, start_pty_board, stop

from k210.firmware import k210wire as w
from k210.host.hil.client import BoardClient
from k210.host.hil.messages import BoardError

LAUNCHER = REPO / "tests" / "boardfakes" / "run_board.py"


def start_board(profile: str, workdir: Path, **config: object) -> tuple[subprocess.Popen, serial.Serial]:
    argv = [PYTHON, str(LAUNCHER), "--profile", profile, "--workdir", str(workdir),
            "--config-json", json.dumps(config)]
    proc, path = start_pty_board(argv)
    return proc, serial.Serial(path, 1_500_000, timeout=0.02)


@pytest.fixture
def maixpy_v1(tmp_path: Path) -> Iterator[BoardClient]:
    proc, port = start_board("maixpy-v1", tmp_path)
    yield BoardClient(port, reply_timeout=0.5)
    port.close()
    stop(proc)


@pytest.fixture
def canmv(tmp_path: Path) -> Iterator[BoardClient]:
    proc, port = start_board("canmv-kpu", tmp_path)
    yield BoardClient(port, reply_timeout=0.5)
    port.close()
    stop(proc)


def test_maixpy_v1_session_refuses_v5(maixpy_v1: BoardClient) -> None:
    link = maixpy_v1
    hello = link.hello()
    assert (hello.backend, hello.kmodel_versions, hello.max_frame) == ("maixpy-v1", (3, 4), 1024)
    assert hello.firmware == "k210-deploy-maixpy"

    v5 = make_arith_kmodel(version=5, input_len=16, pad=3000)
    with pytest.raises(BoardError) as err:
        link.load_model(v5, inputs=[(w.DT_FLOAT32, (1, 16))])
    assert (err.value.name, err.value.detail) == ("UNSUPPORTED_KMODEL", 5)
    assert "MaixPy-v1" in err.value.text and "v3/v4" in err.value.text
    assert link.stats.frames_sent <= 4, "refused at the first chunk, not after the whole upload"

    v4 = make_arith_kmodel(version=4, mul=2, add=1, input_len=16, pad=3000)
    info = link.load_model(v4, inputs=[(w.DT_FLOAT32, (1, 16))],
                           outputs=[(w.DT_UINT8, (1, 16)), (w.DT_FLOAT32, (1,))])
    assert info.kmodel_version == 4 and info.sha256 == hashlib.sha256(v4).hexdigest()
    assert [d.dtype for d in info.outputs] == [w.DT_FLOAT32, w.DT_FLOAT32]  # fmaps hold float32

    for k in range(3):
        x = bytes((k * 50 + i) & 0xFF for i in range(16))
        outputs, micros = link.infer(struct.pack("<16f", *x))
        out0, total = arith_outputs(x, 2, 1)
        assert [o.shape for o in outputs] == [(1, 16), (1,)]
        assert outputs[0].to_numpy().ravel().tolist() == list(out0)
        assert outputs[1].to_numpy().tolist() == [total]
        assert micros >= 0


def test_maixpy_v1_refuses_uint8_inputs_with_a_reason(maixpy_v1: BoardClient) -> None:
    maixpy_v1.load_model(make_arith_kmodel(version=4, input_len=8), inputs=[(w.DT_UINT8, (1, 8))],
                         outputs=[(w.DT_UINT8, (1, 8))])
    with pytest.raises(BoardError) as err:
        maixpy_v1.infer(bytes(8))
    assert err.value.name == "INFER_FAILED" and "float" in err.value.text


def test_canmv_session_accepts_v5(canmv: BoardClient) -> None:
    link = canmv
    hello = link.hello()
    assert (hello.backend, hello.kmodel_versions) == ("canmv-kpu", (3, 4, 5))
    model = make_arith_kmodel(version=5, mul=3, add=7, input_len=100, pad=2500)
    info = link.load_model(model, inputs=[(w.DT_UINT8, (1, 10, 10, 1))],
                           outputs=[(w.DT_UINT8, (1, 100)), (w.DT_FLOAT32, (1,))])
    assert info.kmodel_version == 5 and len(info.outputs) == 2  # get_outputs(index): every output
    x = bytes(range(100))
    outputs, _ = link.infer(x)
    assert [o.shape for o in outputs] == [(1, 100), (1,)]
    out0, total = arith_outputs(x, 3, 7)
    assert outputs[0].to_numpy().ravel().tolist() == list(out0)
    assert outputs[1].to_numpy().tolist() == [total]
    with pytest.raises(BoardError) as err:
        link.infer(bytes(99))
    assert (err.value.name, err.value.detail) == ("BAD_SIZE", 100)


def test_canmv_noisy_link_then_reboot(canmv: BoardClient) -> None:
    canmv.port.write(b"\xde\xad\x00noise\x00")
    noisy = NoisyPort(canmv.port, {1: "corrupt", 3: "dup", 4: "drop", 6: "garbage"})
    link = BoardClient(noisy, reply_timeout=0.3)
    first = link.hello()
    # get_outputs(0) hands back the buffer as float32 values: the declared output says it is uint8.
    link.load_model(make_arith_kmodel(version=5, input_len=52, pad=3000), inputs=[(w.DT_UINT8, (52,))],
                    outputs=[(w.DT_UINT8, (52,))])
    x = bytes(range(50, 102))
    assert link.infer(x)[0][0].to_numpy().tolist() == list(arith_outputs(x, 3, 7)[0])
    assert not noisy.plan and link.stats.retries >= 2
    assert link.hello().rx_dropped >= 2
    after = link.reboot()
    assert after.nonce != first.nonce
    assert not link.model_info().loaded  # an upload does not survive a reset (no boot model configured)


def test_boot_model_from_config(tmp_path: Path) -> None:
    model = make_arith_kmodel(version=4, mul=1, add=2, input_len=4)
    (tmp_path / "boot.kmodel").write_bytes(model)
    proc, port = start_board("maixpy-v1", tmp_path, model=str(tmp_path / "boot.kmodel"), model_size=len(model),
                             model_inputs=[[w.DT_FLOAT32, [1, 4]]], model_outputs=[[w.DT_UINT8, [1, 4]]])
    try:
        link = BoardClient(port, reply_timeout=0.5)
        info = link.model_info()
        assert (info.loaded, info.source, info.kmodel_version) == (True, str(tmp_path / "boot.kmodel"), 4)
        assert (info.size, info.sha256) == (len(model), hashlib.sha256(model).hexdigest())
        outputs, _ = link.infer(struct.pack("<4f", 1, 2, 3, 4))
        assert outputs[0].to_numpy().ravel().tolist() == [3.0, 4.0, 5.0, 6.0]
    finally:
        port.close()
        stop(proc)


def test_boot_model_problem_is_reported_after_hello(tmp_path: Path) -> None:
    model = make_arith_kmodel(version=5, input_len=4)  # MaixPy-v1 cannot load v5
    (tmp_path / "boot.kmodel").write_bytes(model)
    proc, port = start_board("maixpy-v1", tmp_path, model=str(tmp_path / "boot.kmodel"))
    try:
        link = BoardClient(port, reply_timeout=0.5)
        link.hello()
        link.model_info()  # by now the LOG that follows the HELLO reply has been read
        assert not link.model_info().loaded
        assert any("boot model" in text and "v3/v4" in text for _, text in link.stats.logs)
    finally:
        port.close()
        stop(proc)
