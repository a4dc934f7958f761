"""The shared vectors (firmware/protocol/vectors.json): Python and C produce and accept the same bytes
for every one, and both agree with values computed independently of either implementation."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from boardfakes.links import build_c, require_tool

from k210.firmware import k210wire as w

REPO = Path(__file__).resolve().parents[1]
VECTORS = json.loads((REPO / "firmware" / "protocol" / "vectors.json").read_text())
MESSAGES = VECTORS["messages"]
RECEIVER = VECTORS["receiver"]
TYPES = {name: code for code, name in w.TYPE_NAMES.items()}
STRING_KEYS = ("firmware", "fw_version", "backend", "source", "text")


def load_make_vectors() -> Any:
    spec = importlib.util.spec_from_file_location("make_vectors", REPO / "firmware" / "protocol" / "make_vectors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def canonical(type_name: str, flags: int, seq: int, fields: dict[str, Any]) -> str:
    """The wire_tool line format: ints decimal, bytes/strings hex, tensors dtype:d0xd1, '-' for empty."""
    parts = [type_name, str(flags), str(seq)]
    if type_name == "HELLO":
        fields = {"proto": w.PROTOCOL_VERSION, **fields}
    for key, value in fields.items():
        if key in STRING_KEYS:
            value = value.encode().hex() or "-"
        elif key in ("sha256", "data"):
            value = value or "-"
        elif key in ("inputs", "outputs"):
            value = ",".join(f"{d}:" + "x".join(map(str, s)) for d, s in value) or "-"
        elif key == "kmodel_versions":
            value = ",".join(map(str, value)) or "-"
        parts.append(f"{key}={value}")
    return " ".join(parts)


@pytest.fixture(scope="module")
def wire_tool() -> Any:
    require_tool("gcc")
    tool = build_c("host") / "wire_tool"

    def run(lines: list[str]) -> list[str]:
        result = subprocess.run([str(tool)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    return run


def test_vectors_file_is_what_the_generator_writes() -> None:
    gen = load_make_vectors()
    messages = gen.message_vectors()
    assert messages == MESSAGES, "firmware/protocol/vectors.json is stale: run firmware/protocol/make_vectors.py"
    assert gen.receiver_vectors(messages) == RECEIVER


def test_every_message_type_has_a_vector() -> None:
    assert {v["type"] for v in MESSAGES} == set(w.TYPE_NAMES.values())


def test_vectors_cover_caps_every_infer_mode_and_not_cached() -> None:
    """PROTOCOL.md 4.1's fields (reserved before) in both codecs: HELLO caps, INFER_CHUNK mode, NOT_CACHED."""
    modes = {v["fields"].get("mode", 0) for v in MESSAGES if v["type"] == "INFER_CHUNK"}
    assert modes >= {0, w.MODE_ZLIB, w.MODE_KEEP, w.MODE_ZLIB | w.MODE_KEEP, w.MODE_CACHED}
    caps = {v["fields"].get("caps", 0) for v in MESSAGES if v["type"] == "HELLO"}
    assert any(c & w.CAP_CACHE and c >> w.CAP_CACHE_LOG2_SHIFT for c in caps) and w.CAP_INFLATE in caps
    assert {v["fields"]["detail"] for v in MESSAGES if v["type"] == "ERROR" and v["fields"]["code"] == w.E_NOT_CACHED} \
        == {0, 1}
    for v in MESSAGES:  # the fields sit where the reserved u16s were: payload offset 2
        payload = bytes.fromhex(v["payload_hex"])
        if v["type"] in ("HELLO", "INFER_CHUNK"):
            assert int.from_bytes(payload[2:4], "little") == v["fields"].get("caps", v["fields"].get("mode", 0))


@pytest.mark.parametrize("vec", MESSAGES, ids=[v["name"] for v in MESSAGES])
def test_python_encodes_and_decodes_each_vector(vec: dict[str, Any]) -> None:
    gen = load_make_vectors()
    mtype = TYPES[vec["type"]]
    payload = w.encode_payload(mtype, gen.to_codec(mtype, vec["fields"]))
    assert payload.hex() == vec["payload_hex"]
    assert w.encode_frame(mtype, vec["flags"], vec["seq"], payload).hex() == vec["frame_hex"]
    (version, got_type, flags, seq, got_payload), = w.decode_frames(bytes.fromhex(vec["frame_hex"]))
    assert (version, got_type, flags, seq) == (1, mtype, vec["flags"], vec["seq"])
    assert gen.to_json(w.decode_message(mtype, got_payload)) == vec["fields"]


def test_c_encodes_every_vector_to_the_same_bytes(wire_tool: Any) -> None:
    lines = ["E " + canonical(v["type"], v["flags"], v["seq"], v["fields"]) for v in MESSAGES]
    assert wire_tool(lines) == [v["frame_hex"] for v in MESSAGES]


def test_c_decodes_every_vector_to_the_same_fields(wire_tool: Any) -> None:
    got = wire_tool(["D " + v["frame_hex"] for v in MESSAGES])
    assert got == [canonical(v["type"], v["flags"], v["seq"], v["fields"]) for v in MESSAGES]


def test_receivers_agree_on_damaged_streams(wire_tool: Any) -> None:
    by_name = {v["name"]: v for v in MESSAGES}
    for vec in RECEIVER:
        stream = bytes.fromhex(vec["stream_hex"])
        expected = [by_name[n] for n in vec["frames"]]
        python = [(t, f, s) for _, t, f, s, _ in w.decode_frames(stream)]
        assert python == [(TYPES[v["type"]], v["flags"], v["seq"]) for v in expected], vec["name"]
        c_lines = [line for line in wire_tool(["D " + stream.hex()]) if line != "DROPPED"]
        assert c_lines == [canonical(v["type"], v["flags"], v["seq"], v["fields"]) for v in expected], vec["name"]


def test_c_reports_malformed_payloads(wire_tool: Any) -> None:
    short_hello = w.encode_frame(w.HELLO, w.FLAG_REPLY, 1, b"\x01\x00")
    too_many_dims = w.encode_frame(w.LOAD_BEGIN, 0, 1, bytes(36) + b"\x01\x00\x04\x09" + bytes(36))
    assert wire_tool(["D " + short_hello.hex(), "D " + too_many_dims.hex()]) == ["BADPAYLOAD", "BADPAYLOAD"]
    for frame in (short_hello, too_many_dims):
        _, mtype, _, _, payload = w.decode_frames(frame)[0]
        with pytest.raises(w.ProtocolError):
            w.decode_message(mtype, payload)


def test_c_primitives_against_published_values(wire_tool: Any) -> None:
    from test_protocol_python import WIKIPEDIA_COBS

    lines = ["C " + b"123456789".hex(), "C -", "S -", "S " + b"abc".hex()]
    lines += ["X " + raw for raw, _ in WIKIPEDIA_COBS] + ["Y " + enc for _, enc in WIKIPEDIA_COBS]
    out = wire_tool(lines)
    assert out[0] == "cbf43926" and out[1] == "00000000"
    # FIPS 180-2 appendix B.1 ("abc") and the empty-message digest.
    assert out[2] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert out[3] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    n = len(WIKIPEDIA_COBS)
    assert out[4:4 + n] == [enc for _, enc in WIKIPEDIA_COBS]
    assert out[4 + n:] == [raw for raw, _ in WIKIPEDIA_COBS]


def test_c_sha256_long_input(wire_tool: Any) -> None:
    data = bytes(range(256)) * 41 + b"tail"  # crosses many blocks and an odd final block
    assert wire_tool(["S " + data.hex()]) == [hashlib.sha256(data).hexdigest()]
    assert wire_tool(["C " + data.hex()]) == [f"{zlib.crc32(data):08x}"]


def test_worked_example_in_protocol_md_matches_the_vectors() -> None:
    doc = "".join((REPO / "firmware" / "PROTOCOL.md").read_text().split())
    for name in ("infer_chunk_first", "ack_infer"):
        frame_hex = next(v["frame_hex"] for v in MESSAGES if v["name"] == name)
        assert frame_hex in doc, f"PROTOCOL.md's worked example does not show {name}'s bytes"
