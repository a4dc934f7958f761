"""Property tests for the Python decoder (the Python twin of the C libFuzzer target): random bytes and
mutated valid frames never raise, bad frames are dropped and counted, valid frames always round-trip."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k210.firmware import k210wire as w

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(max_size=40)
blob = st.binary(max_size=300)
sha = st.binary(min_size=32, max_size=32).map(bytes.hex)
tensor = st.tuples(st.integers(0, 11), st.lists(st.integers(0, 4096), max_size=w.MAX_NDIM).map(tuple))
tensors = st.lists(tensor, max_size=3)

MESSAGES: dict[int, Any] = {
    w.HELLO_REQ: st.just({}),
    w.MODEL_INFO_REQ: st.just({}),
    w.LOAD_COMMIT: st.just({}),
    w.REBOOT: st.just({}),
    w.HELLO: st.fixed_dictionaries({
        "max_frame": u32, "rx_window": u32, "nonce": u32, "max_model": u32, "max_input": u32, "rx_frames": u32,
        "rx_dropped": u32, "kmodel_versions": st.lists(st.integers(0, 255), max_size=5), "firmware": text,
        "fw_version": text, "backend": text}),
    w.MODEL_INFO: st.fixed_dictionaries({
        "loaded": st.integers(0, 1), "kmodel_version": st.integers(0, 255), "size": u32, "sha256": sha,
        "source": text, "inputs": tensors, "outputs": tensors}),
    w.LOAD_BEGIN: st.fixed_dictionaries({"size": u32, "sha256": sha, "inputs": tensors, "outputs": tensors}),
    w.LOAD_CHUNK: st.fixed_dictionaries({"offset": u32, "data": blob}),
    w.INFER_CHUNK: st.fixed_dictionaries({"req": u16, "total": u32, "offset": u32, "data": blob}),
    w.ACK: st.fixed_dictionaries({"req": u16, "next": u32}),
    w.RESULT: st.fixed_dictionaries({"req": u16, "n_outputs": st.integers(0, 8), "micros": u32, "total": u32,
                                     "offset": u32, "data": blob}),
    w.ERROR: st.fixed_dictionaries({"code": u16, "req": u16, "detail": u32, "text": text}),
    w.LOG: st.fixed_dictionaries({"level": st.integers(0, 255), "text": text}),
}

messages = st.sampled_from(sorted(MESSAGES)).flatmap(
    lambda t: st.tuples(st.just(t), st.integers(0, 3), u16, MESSAGES[t]))


def normalise(mtype: int, fields: dict[str, Any]) -> dict[str, Any]:
    f = dict(fields)
    for key in ("firmware", "fw_version", "backend", "source", "text"):
        if key in f:  # strings are cut at 255 UTF-8 bytes (never mid-character here: max 40 chars)
            f[key] = f[key].encode()[:255].decode()
    if mtype == w.HELLO:
        f["proto"] = w.PROTOCOL_VERSION
    return f


@SETTINGS
@given(messages)
def test_valid_frames_round_trip(msg: tuple[int, int, int, dict[str, Any]]) -> None:
    mtype, flags, seq, fields = msg
    frame = w.encode_frame(mtype, flags, seq, w.encode_payload(mtype, fields))
    assert frame.count(0) == 1 and frame.endswith(b"\x00")
    (version, got_type, got_flags, got_seq, payload), = w.decode_frames(frame)
    assert (version, got_type, got_flags, got_seq) == (1, mtype, flags, seq)
    assert w.decode_message(mtype, payload) == normalise(mtype, fields)


@SETTINGS
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_random_bytes_never_raise(data: bytes, piece: int) -> None:
    d = w.FrameDecoder(256)
    delivered: list[bytes] = []
    for at in range(0, len(data), piece):
        d.feed(data[at:at + piece], lambda f: delivered.append(bytes(f)))
    for frame in delivered:  # whatever got through has a valid CRC; its payload may still be nonsense
        _, mtype, _, _ = w.parse_header(frame)
        try:
            w.decode_message(mtype, frame[w.HEADER_LEN:])
        except w.ProtocolError:
            pass
    assert d.frames == len(delivered)


@SETTINGS
@given(messages, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
       st.binary(max_size=20))
def test_mutated_frames_are_dropped_or_decoded_and_the_next_frame_survives(
        msg: tuple[int, int, int, dict[str, Any]], flips: list[tuple[int, int]], prefix: bytes) -> None:
    mtype, flags, seq, fields = msg
    frame = bytearray(w.encode_frame(mtype, flags, seq, w.encode_payload(mtype, fields)))
    for pos, value in flips:
        frame[pos % len(frame)] = value
    sentinel = w.encode_frame(w.HELLO_REQ, 0, 4242, b"")
    delivered: list[bytes] = []
    d = w.FrameDecoder(2048)
    d.feed(prefix + bytes(frame) + b"\x00" + sentinel, lambda f: delivered.append(bytes(f)))
    for f in delivered:
        try:
            w.decode_message(w.parse_header(f)[1], f[w.HEADER_LEN:])
        except w.ProtocolError:
            pass
    # Whatever the damage, the delimiter in front of the sentinel resynchronises the stream.
    assert delivered and w.parse_header(delivered[-1]) == (1, w.HELLO_REQ, 0, 4242)
