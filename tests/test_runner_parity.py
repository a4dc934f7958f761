"""The Python runner (k210runner, on MaixPy/CanMV) and the C runner (core/runner.c) follow the same
board rules: one scripted stream of requests, including duplicates, gaps, stale and malformed
chunks, gets the same replies from both (texts and timings aside)."""

from __future__ import annotations

import hashlib
import subprocess
from typing import Any

from boardfakes.arith_model import make_arith_kmodel
from boardfakes.links import build_c, in_process_board, require_tool

from k210.firmware import k210wire as w

MAX_FRAME = 256


def script() -> list[bytes]:
    model = make_arith_kmodel(version=5, mul=9, add=4, input_len=40, pad=500)
    sha = hashlib.sha256(model).hexdigest()
    frames: list[tuple[int, dict[str, Any]]] = [
        (w.MODEL_INFO_REQ, {}),
        (w.INFER_CHUNK, {"req": 1, "total": 40, "offset": 0, "data": b"x" * 10}),  # NO_MODEL
        (w.LOAD_CHUNK, {"offset": 0, "data": model[:50]}),  # NOT_LOADING
        (w.LOAD_BEGIN, {"size": 9 << 20, "sha256": sha, "inputs": [], "outputs": []}),  # TOO_BIG
        (w.LOAD_BEGIN, {"size": len(model), "sha256": sha, "inputs": [(4, (1, 40))], "outputs": []}),
        (w.LOAD_CHUNK, {"offset": 0, "data": model[:200]}),
        (w.LOAD_CHUNK, {"offset": 0, "data": model[:200]}),  # duplicate
        (w.LOAD_CHUNK, {"offset": 300, "data": model[300:400]}),  # GAP
        (w.LOAD_CHUNK, {"offset": 150, "data": model[150:350]}),  # overlap
        (w.LOAD_COMMIT, {}),  # GAP: not all in
        (w.LOAD_CHUNK, {"offset": 350, "data": model[350:]}),
        (w.LOAD_CHUNK, {"offset": 350, "data": model[350:] + b"!"}),  # past the end
        (w.LOAD_COMMIT, {}),
        (w.LOAD_COMMIT, {}),  # duplicate
        (w.LOAD_CHUNK, {"offset": 0, "data": model[:10]}),  # late duplicate
        (w.INFER_CHUNK, {"req": 7, "total": 40, "offset": 8, "data": b"a" * 8}),  # STALE
        (w.INFER_CHUNK, {"req": 7, "total": 41, "offset": 0, "data": b"a" * 8}),  # BAD_SIZE
        (w.INFER_CHUNK, {"req": 7, "total": 40, "offset": 0, "data": bytes(range(16))}),
        (w.INFER_CHUNK, {"req": 7, "total": 40, "offset": 20, "data": bytes(10)}),  # GAP
        (w.INFER_CHUNK, {"req": 7, "total": 39, "offset": 16, "data": bytes(4)}),  # total changed
        (w.INFER_CHUNK, {"req": 7, "total": 40, "offset": 8, "data": bytes(range(8, 30))}),
        (w.INFER_CHUNK, {"req": 8, "total": 40, "offset": 0, "data": bytes(5)}),  # abandons 7
        (w.INFER_CHUNK, {"req": 7, "total": 40, "offset": 30, "data": bytes(10)}),  # STALE now
        (w.INFER_CHUNK, {"req": 8, "total": 40, "offset": 5, "data": bytes(range(100, 135))}),  # final
        (w.INFER_CHUNK, {"req": 8, "total": 40, "offset": 5, "data": bytes(range(100, 135))}),  # retried final
        (w.INFER_CHUNK, {"req": 8, "total": 40, "offset": 0, "data": bytes(5)}),  # old chunk of a done request
        (w.INFER_CHUNK, {"req": 8, "total": 40, "offset": 38, "data": bytes(5)}),  # past the end
        (w.INFER_CHUNK, {"req": 9, "total": 40}),  # malformed: no fields
        (0x42, {}),  # unknown type
        (w.MODEL_INFO_REQ, {}),
        (w.LOAD_BEGIN, {"size": 20, "sha256": "00" * 32, "inputs": [], "outputs": []}),  # unloads
        (w.LOAD_CHUNK, {"offset": 0, "data": b"LDMK\x07\x00\x00\x00" + bytes(12)}),  # v7: unsupported
        (w.MODEL_INFO_REQ, {}),
    ]
    out = []
    for seq, (mtype, fields) in enumerate(frames, start=1):
        if mtype == w.INFER_CHUNK and "data" not in fields:
            payload = b"\x09\x00\x00"
        elif mtype == 0x42:
            payload = b""
        else:
            payload = w.encode_payload(mtype, fields)
        out.append(w.encode_frame(mtype, 0, seq, payload))
    return out


def comparable(stream: bytes) -> list[tuple]:
    out = []
    for _, mtype, flags, seq, payload in w.decode_frames(stream):
        fields = w.decode_message(mtype, payload)
        if mtype == w.HELLO:
            continue  # names and limits differ by design
        fields.pop("text", None)
        fields.pop("micros", None)
        out.append((w.TYPE_NAMES[mtype], flags, seq, fields))
    return out


def test_python_and_c_runners_answer_alike() -> None:
    require_tool("gcc")
    frames = script()
    runner, port = in_process_board(max_frame=MAX_FRAME, max_input=4096, max_model=8 << 20)
    for frame in frames:
        port.write(frame)
    python = comparable(port.read(1 << 20))

    exe = build_c("host") / "k210_runner_host"
    result = subprocess.run([str(exe), "--stdio", "--max-frame", str(MAX_FRAME), "--max-input", "4096",
                             "--max-model", str(8 << 20)], input=b"".join(frames), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    c = comparable(result.stdout)

    assert len(python) == len(c)
    for p, q in zip(python, c):
        assert p == q
    kinds = [(m[0], m[3].get("code")) for m in python]
    assert ("RESULT", None) in kinds and ("ERROR", w.E_UNSUPPORTED_KMODEL) in kinds
    assert {code for kind, code in kinds if kind == "ERROR"} >= {
        w.E_NO_MODEL, w.E_NOT_LOADING, w.E_TOO_BIG, w.E_GAP, w.E_BAD_PAYLOAD, w.E_STALE, w.E_BAD_SIZE,
        w.E_UNKNOWN_TYPE, w.E_UNSUPPORTED_KMODEL}
