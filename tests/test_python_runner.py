"""The board-side rules (PROTOCOL.md "Board behaviour") in k210runner, driven in-process, raw frames
and through BoardClient; the C runner is held to the same session in test_c_runner.py."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.links import ArithBackend, NoisyPort, in_process_board

from k210.firmware import k210wire as w
from k210.host.hil.client import BoardClient
from k210.host.hil.messages import BoardError, BoardReset, BoardTimeout


def request(port: Any, mtype: int, fields: dict[str, Any], seq: int) -> list[tuple[int, int, int, dict[str, Any]]]:
    """Send one raw frame; return the decoded replies (type, flags, seq, fields)."""
    port.write(w.encode_frame(mtype, 0, seq, w.encode_payload(mtype, fields)))
    replies = w.decode_frames(port.read(1 << 20))
    return [(t, f, s, w.decode_message(t, p)) for _, t, f, s, p in replies]


def upload(port: Any, model: bytes, chunk: int = 100) -> None:
    sha = hashlib.sha256(model).hexdigest()
    begin = {"size": len(model), "sha256": sha, "inputs": [], "outputs": []}
    assert request(port, w.LOAD_BEGIN, begin, 1)[0][0] == w.ACK
    for off in range(0, len(model), chunk):
        assert request(port, w.LOAD_CHUNK, {"offset": off, "data": model[off:off + chunk]}, 2)[0][0] == w.ACK
    assert [r[0] for r in request(port, w.LOAD_COMMIT, {}, 3)] == [w.ACK, w.MODEL_INFO]


def chunk(req: int, total: int, offset: int, data: bytes) -> dict[str, Any]:
    return {"req": req, "total": total, "offset": offset, "data": data}


def test_boot_hello_and_hello_reply() -> None:
    runner, port = in_process_board()
    runner.announce()
    (_, mtype, flags, seq, payload), = w.decode_frames(port.read(1000))
    assert (mtype, flags, seq) == (w.HELLO, w.FLAG_EVENT, 0)
    hello = w.decode_message(mtype, payload)
    assert hello["nonce"] == 0x1234 and hello["kmodel_versions"] == [3, 4, 5] and hello["max_frame"] == 256
    (t, f, s, fields), = request(port, w.HELLO_REQ, {}, 77)
    assert (t, f, s) == (w.HELLO, w.FLAG_REPLY, 77) and fields["rx_frames"] == 1


def test_duplicated_and_overlapping_chunks_are_tolerated() -> None:
    backend = ArithBackend()
    runner, port = in_process_board(backend)
    upload(port, make_arith_kmodel(input_len=10))
    x = bytes(range(10, 20))
    assert request(port, w.INFER_CHUNK, chunk(5, 10, 0, x[:4]), 10)[0][3] == {"req": 5, "next": 4}
    assert request(port, w.INFER_CHUNK, chunk(5, 10, 0, x[:4]), 10)[0][3] == {"req": 5, "next": 4}  # duplicate
    assert request(port, w.INFER_CHUNK, chunk(5, 10, 2, x[2:7]), 11)[0][3] == {"req": 5, "next": 7}  # overlap
    working, (t, _, s, res) = request(port, w.INFER_CHUNK, chunk(5, 10, 7, x[7:]), 12)
    assert working[0] == w.ACK and working[3] == {"req": 5, "next": 10}  # "got it all, running"
    assert t == w.RESULT and s == 12 and res["micros"] == 42 and backend.infer_calls == 1
    outputs = w.parse_result_blob(res["data"], res["n_outputs"])
    out0, total = arith_outputs(x, 3, 7)
    assert outputs == [(w.DT_UINT8, (10,), out0), (w.DT_FLOAT32, (1,), struct.pack("<f", total))]
    # The final chunk again (its RESULT was lost): the same RESULT, without running the model again.
    (t, _, s, again), = request(port, w.INFER_CHUNK, chunk(5, 10, 7, x[7:]), 13)
    assert t == w.RESULT and again == res and backend.infer_calls == 1
    assert request(port, w.INFER_CHUNK, chunk(5, 10, 0, x[:4]), 14)[0][3] == {"req": 5, "next": 10}


def test_gap_stale_and_abandoned_requests() -> None:
    runner, port = in_process_board()
    upload(port, make_arith_kmodel(input_len=8))
    (t, _, _, err), = request(port, w.INFER_CHUNK, chunk(1, 8, 4, b"abcd"), 1)
    assert t == w.ERROR and err["code"] == w.E_STALE and err["req"] == 1
    request(port, w.INFER_CHUNK, chunk(1, 8, 0, b"ab"), 2)
    (t, _, _, err), = request(port, w.INFER_CHUNK, chunk(1, 8, 4, b"abcd"), 3)
    assert (err["code"], err["detail"]) == (w.E_GAP, 2)
    request(port, w.INFER_CHUNK, chunk(2, 8, 0, b"xy"), 4)  # request 2 starts: request 1 is abandoned
    assert runner.abandoned == 1
    (t, _, _, err), = request(port, w.INFER_CHUNK, chunk(1, 8, 2, b"cd"), 5)
    assert err["code"] == w.E_STALE
    (t, _, _, err), = request(port, w.INFER_CHUNK, chunk(2, 9, 2, b"cd"), 6)
    assert (err["code"], err["detail"]) == (w.E_BAD_SIZE, 8)
    (t, _, _, err), = request(port, w.INFER_CHUNK, chunk(3, 7, 0, b"1234567"), 7)
    assert (err["code"], err["detail"]) == (w.E_BAD_SIZE, 8)
    (t, _, _, err), = request(port, w.INFER_CHUNK, chunk(2, 8, 6, b"xyz"), 8)
    assert err["code"] == w.E_BAD_PAYLOAD


def test_load_errors() -> None:
    runner, port = in_process_board(ArithBackend(versions=(3, 4)))
    model = make_arith_kmodel(version=4, input_len=4)
    (t, _, _, err), = request(port, w.LOAD_CHUNK, {"offset": 0, "data": model}, 1)
    assert err["code"] == w.E_NOT_LOADING
    (t, _, _, err), = request(port, w.LOAD_BEGIN, {"size": 2 << 20, "sha256": "00" * 32, "inputs": [],
                                                    "outputs": []}, 2)
    assert (err["code"], err["detail"]) == (w.E_TOO_BIG, 1 << 20)
    request(port, w.LOAD_BEGIN, {"size": len(model), "sha256": "00" * 32, "inputs": [], "outputs": []}, 3)
    request(port, w.LOAD_CHUNK, {"offset": 0, "data": model[:10]}, 4)
    (t, _, _, err), = request(port, w.LOAD_COMMIT, {}, 5)
    assert (err["code"], err["detail"]) == (w.E_GAP, 10)
    request(port, w.LOAD_CHUNK, {"offset": 10, "data": model[10:]}, 6)
    _, (t, _, _, err) = request(port, w.LOAD_COMMIT, {}, 7)
    assert err["code"] == w.E_HASH_MISMATCH
    v5 = make_arith_kmodel(version=5, input_len=4)
    request(port, w.LOAD_BEGIN, {"size": len(v5), "sha256": hashlib.sha256(v5).hexdigest(), "inputs": [],
                                 "outputs": []}, 8)
    (t, _, _, err), = request(port, w.LOAD_CHUNK, {"offset": 0, "data": v5[:3]}, 9)
    assert t == w.ACK  # 3 bytes: too few to tell the version yet
    (t, _, _, err), = request(port, w.LOAD_CHUNK, {"offset": 3, "data": v5[3:]}, 10)
    assert (err["code"], err["detail"]) == (w.E_UNSUPPORTED_KMODEL, 5)
    (t, _, _, err), = request(port, w.LOAD_COMMIT, {}, 11)
    assert err["code"] == w.E_NOT_LOADING
    (t, _, _, err), = request(port, w.INFER_CHUNK, chunk(1, 4, 0, b"abcd"), 12)
    assert err["code"] == w.E_NO_MODEL


def test_unknown_type_bad_version_and_echoed_board_frames() -> None:
    runner, port = in_process_board()
    port.write(w.encode_frame(0x42, 0, 9, b""))
    (_, t, _, s, p), = w.decode_frames(port.read(1000))
    err = w.decode_message(t, p)
    assert (t, s, err["code"], err["detail"]) == (w.ERROR, 9, w.E_UNKNOWN_TYPE, 0x42)
    raw = bytearray(w.HEADER_LEN)
    struct.pack_into("<BBBBH", raw, 0, 2, w.HELLO_REQ, 0, 0, 3)
    raw += struct.pack("<I", w.crc32(bytes(raw)))
    enc = bytearray(w.cobs_max_encoded(len(raw)))
    frame = bytes(enc[: w.cobs_encode(raw, len(raw), enc)]) + b"\x00"
    port.write(frame)
    (_, t, _, _, p), = w.decode_frames(port.read(1000))
    assert w.decode_message(t, p)["code"] == w.E_BAD_VERSION
    port.write(w.encode_frame(w.HELLO, w.FLAG_REPLY, 1, w.encode_payload(w.HELLO, {
        "max_frame": 64, "rx_window": 0, "nonce": 1, "max_model": 0, "max_input": 0, "rx_frames": 0, "rx_dropped": 0,
        "kmodel_versions": [], "firmware": "", "fw_version": "", "backend": ""})))
    assert port.read(1000) == b"" and runner.ignored == 1


def test_result_bigger_than_a_frame_comes_in_parts() -> None:
    runner, port = in_process_board(max_frame=128, max_input=600)
    link = BoardClient(port, reply_timeout=0.05)
    link.load_model(make_arith_kmodel(input_len=500, pad=700))
    x = bytes((i * 13) & 0xFF for i in range(500))
    outputs, micros = link.infer(x)
    out0, total = arith_outputs(x, 3, 7)
    assert outputs[0].data == out0 and outputs[1].to_numpy().tolist() == [total] and micros == 42
    assert link.stats.retries == 0


def test_client_survives_a_noisy_link() -> None:
    runner, port = in_process_board()
    noisy = NoisyPort(port, {1: "drop", 3: "corrupt", 5: "dup", 6: "garbage", 9: "drop", 12: "corrupt", 14: "dup"})
    link = BoardClient(noisy, reply_timeout=0.05)
    link.hello()
    model = make_arith_kmodel(input_len=300, pad=900)
    info = link.load_model(model)
    assert info.sha256 == hashlib.sha256(model).hexdigest()
    for i in range(3):
        x = bytes((i + j) & 0xFF for j in range(300))
        outputs, _ = link.infer(x)
        assert outputs[0].data == arith_outputs(x, 3, 7)[0]
    assert sorted(noisy.applied) == sorted(["drop", "corrupt", "dup", "garbage", "drop", "corrupt", "dup"])
    assert link.stats.retries >= 4 and runner.decoder.dropped() >= 2


def test_client_errors_timeouts_and_resets() -> None:
    runner, port = in_process_board()
    link = BoardClient(port, reply_timeout=0.02, retries=1)
    with pytest.raises(BoardError) as err:
        link.infer(b"abc")
    assert err.value.name == "NO_MODEL"
    link.load_model(make_arith_kmodel(input_len=4))
    runner.nonce = 0x9999  # the board "reboots": its boot HELLO carries a new nonce
    runner.announce()
    with pytest.raises(BoardReset):
        link.model_info()
    assert link.nonce == 0x9999
    dead = NoisyPort(port, {i: "drop" for i in range(10)})
    with pytest.raises(BoardTimeout):
        BoardClient(dead, reply_timeout=0.01, retries=2).hello()
