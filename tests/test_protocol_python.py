"""k210wire (the one Python implementation of the protocol): checked against hand-computed values,
and held to the MicroPython subset so the same file runs on the board."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest

from k210.firmware import k210wire as w

MAIXPY = Path(__file__).resolve().parents[1] / "firmware" / "maixpy"


# --- independent checks: published values, not our own output --------------------------------------


def test_crc32_check_value() -> None:
    # The catalogue check value of CRC-32/ISO-HDLC (reveng): crc("123456789").
    assert w.crc32(b"123456789") == 0xCBF43926
    assert w._crc32_soft(b"123456789") == 0xCBF43926
    assert w.crc32(b"") == 0


def test_crc32_continues() -> None:
    assert w.crc32(b"56789", w.crc32(b"1234")) == 0xCBF43926


# Examples from the COBS article on Wikipedia (encoded without the trailing 0x00 delimiter).
WIKIPEDIA_COBS = [
    ("00", "0101"),
    ("0000", "010101"),
    ("00110000", "0102110101"),
    ("11220033", "0311220233"),
    ("11223344", "0511223344"),
    ("11000000", "0211010101"),
    (bytes(range(1, 255)).hex(), "ff" + bytes(range(1, 255)).hex()),
    (bytes(range(0, 255)).hex(), "01ff" + bytes(range(1, 255)).hex()),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "0101"),
    (bytes(range(3, 256)).hex() + "0001", "fe" + bytes(range(3, 256)).hex() + "0201"),
]


@pytest.mark.parametrize(("raw", "encoded"), WIKIPEDIA_COBS)
def test_cobs_matches_wikipedia(raw: str, encoded: str) -> None:
    src = bytes.fromhex(raw)
    dst = bytearray(w.cobs_max_encoded(len(src)))
    n = w.cobs_encode(src, len(src), dst)
    assert dst[:n].hex() == encoded
    back = bytearray(len(src) + 1)
    assert w.cobs_decode(bytes.fromhex(encoded), len(encoded) // 2, back) == len(src)
    assert back[: len(src)] == src


def test_cobs_rejects_malformed_and_too_long() -> None:
    assert w.cobs_decode(b"\x05\x11\x22", 3, bytearray(10)) == -1  # the code promises 4 bytes, 2 follow
    assert w.cobs_decode(b"\x01\x00", 2, bytearray(10)) == -1  # a zero inside a frame
    assert w.cobs_decode(b"\x05\x11\x22\x33\x44", 5, bytearray(3)) == -2


def test_frame_layout_by_hand() -> None:
    # ACK req=1 next=3, seq 10, reply flag: header 01 80 01 00 0a 00, payload 01 00 00 00 03 00 00 00.
    raw = bytes.fromhex("018001000a00" "0100000003000000")
    crc = struct.pack("<I", __import__("zlib").crc32(raw))
    body = raw + crc
    # COBS by hand: the zero bytes split the body into runs, each run gets its length + 1 in front.
    expected = bytearray()
    for run in body.split(b"\x00"):
        while len(run) >= 254:
            expected += b"\xff" + run[:254]
            run = run[254:]
        expected += bytes([len(run) + 1]) + run
    frame = w.encode_frame(w.ACK, w.FLAG_REPLY, 10, bytes.fromhex("0100000003000000"))
    assert frame == bytes(expected) + b"\x00"


# --- the streaming decoder ---------------------------------------------------------------------------


def collect(decoder: w.FrameDecoder, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    decoder.feed(data, lambda f: out.append(bytes(f)))
    return out


def bad_crc_frame(mtype: int, payload: bytes) -> bytes:
    """A frame whose COBS is fine but whose CRC does not match (one payload bit flipped after the CRC)."""
    raw = bytearray(w.HEADER_LEN) + payload
    struct.pack_into("<BBBBH", raw, 0, 1, mtype, 0, 0, 9)
    raw += struct.pack("<I", w.crc32(bytes(raw)))
    raw[w.HEADER_LEN] ^= 0x40
    enc = bytearray(w.cobs_max_encoded(len(raw)))
    return bytes(enc[: w.cobs_encode(raw, len(raw), enc)]) + b"\x00"


def test_decoder_resyncs_after_garbage_and_counts_drops() -> None:
    good = w.encode_frame(w.HELLO_REQ, 0, 7, b"")
    d = w.FrameDecoder(128)
    stream = b"\x02\x42\x00" + b"\x17\x42\x00" + bad_crc_frame(w.ACK, b"\x01\x00\x00\x00\x02\x00\x00\x00") + good
    frames = collect(d, stream)
    assert len(frames) == 1 and w.parse_header(frames[0]) == (1, w.HELLO_REQ, 0, 7)
    assert (d.frames, d.runts, d.bad_cobs, d.bad_crc) == (1, 1, 1, 1)
    assert d.dropped() == 3


def test_decoder_drops_overlong_frames_and_recovers() -> None:
    d = w.FrameDecoder(64)
    big = w.encode_frame(w.LOG, w.FLAG_EVENT, 1, b"\x01" + bytes([200]) + b"x" * 200)
    good = w.encode_frame(w.HELLO_REQ, 0, 2, b"")
    frames = collect(d, big + good)
    assert [w.parse_header(f)[3] for f in frames] == [2]
    assert d.overruns == 1


def test_decoder_byte_at_a_time() -> None:
    d = w.FrameDecoder(256)
    stream = w.encode_frame(w.HELLO_REQ, 0, 1, b"") + w.encode_frame(w.MODEL_INFO_REQ, 0, 2, b"")
    out: list[bytes] = []
    for b in stream:
        d.feed(bytes([b]), lambda f: out.append(bytes(f)))
    assert [w.parse_header(f)[1] for f in out] == [w.HELLO_REQ, w.MODEL_INFO_REQ]


def test_writer_refuses_payload_over_max_frame() -> None:
    writer = w.FrameWriter(64)
    assert writer.room() == 54
    writer.seal(w.LOG, 0, 1, 54)
    with pytest.raises(w.ProtocolError):
        writer.seal(w.LOG, 0, 1, 55)


# --- payload codec -----------------------------------------------------------------------------------


def test_truncated_payloads_raise_protocol_error_only() -> None:
    full = w.encode_payload(w.MODEL_INFO, {
        "loaded": 1, "kmodel_version": 5, "size": 10, "sha256": "ab" * 32, "source": "upload",
        "inputs": [(4, (1, 2))], "outputs": [(9, (3,))]})
    for cut in range(len(full)):
        with pytest.raises(w.ProtocolError):
            w.decode_message(w.MODEL_INFO, full[:cut])
    assert w.decode_message(w.MODEL_INFO, full)["inputs"] == [(4, (1, 2))]


def test_limits_on_dims_tensors_and_strings() -> None:
    with pytest.raises(w.ProtocolError):
        w.encode_payload(w.LOAD_BEGIN, {"size": 1, "sha256": "00" * 32, "inputs": [(4, (1,) * 9)], "outputs": []})
    with pytest.raises(w.ProtocolError):
        w.encode_payload(w.LOAD_BEGIN, {"size": 1, "sha256": "00" * 32, "inputs": [(4, (1,))] * 9, "outputs": []})
    bad_ndim = bytes(38) + b"\x04\x09" + bytes(36)
    bad_ndim = bad_ndim[:36] + b"\x01\x00" + bad_ndim[38:]
    with pytest.raises(w.ProtocolError):
        w.decode_message(w.LOAD_BEGIN, bad_ndim)
    long_text = w.decode_message(w.LOG, w.encode_payload(w.LOG, {"level": 1, "text": "y" * 400}))["text"]
    assert long_text == "y" * 255


def test_result_blob_records() -> None:
    blob = bytearray()
    for dtype, shape, data in ((w.DT_UINT8, (3,), b"\x01\x02\x03"), (w.DT_FLOAT32, (), struct.pack("<f", 2.5))):
        head = bytearray(w.record_header_len(shape))
        w.put_record_header(head, 0, dtype, shape, len(data))
        blob += head + data
    assert w.parse_result_blob(bytes(blob), 2) == [(4, (3,), b"\x01\x02\x03"), (9, (), struct.pack("<f", 2.5))]
    with pytest.raises(w.ProtocolError):
        w.parse_result_blob(bytes(blob) + b"\x00", 2)
    with pytest.raises(w.ProtocolError):
        w.parse_result_blob(bytes(blob[:-1]), 2)


def test_kmodel_version_sniffing() -> None:
    assert w.kmodel_version(b"LDMK\x05\x00\x00\x00rest") == 5
    assert w.kmodel_version(b"LDMK\x04\x00\x00\x00") == 4
    assert w.kmodel_version(b"\x03\x00\x00\x00\x00\x00\x00\x00") == 3
    assert w.kmodel_version(b"PK\x03\x04zip!") == 0
    assert w.tensor_nbytes(w.DT_FLOAT32, (1, 28, 28, 1)) == 3136
    assert w.tensor_nbytes(99, (1,)) == -1


# --- the board files stay inside MicroPython's language -------------------------------------------------


@pytest.mark.parametrize("name", ["k210wire.py", "k210runner.py", "main.py"])
def test_board_files_use_only_micropython_syntax(name: str) -> None:
    tree = ast.parse((MAIXPY / name).read_text())
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            problems.append(f"f-string at line {node.lineno}")
        if isinstance(node, ast.AnnAssign) or (isinstance(node, ast.arg) and node.annotation is not None):
            problems.append(f"annotation at line {node.lineno}")
        if isinstance(node, ast.FunctionDef) and node.returns is not None:
            problems.append(f"return annotation at line {node.lineno}")
        if isinstance(node, ast.ImportFrom) and node.module in ("__future__", "typing", "dataclasses"):
            problems.append(f"import from {node.module} at line {node.lineno}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n in ("typing", "dataclasses", "enum", "abc", "pathlib") for n in names if n):
                problems.append(f"CPython-only import at line {node.lineno}")
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("hex", "fromhex"):
            problems.append(f"bytes.hex/fromhex at line {node.lineno} (MicroPython 1.11 lacks them)")
    assert not problems, f"{name}: " + "; ".join(problems)
