"""firmware/maixpy/*.py in real MicroPython: npm's WebAssembly builds of MicroPython 1.10 (one release
older than the 1.11 core MaixPy-v1 and CanMV pin: whatever runs there uses nothing newer) and 1.27,
under node, with only the hardware stubbed (tests/boardfakes/mp_stubs.py). The same byte streams go to
CPython; every reply must be identical byte for byte, refusals, reboots and damaged frames included.
The sample cache and zlib inputs (k210cache.py, issue 15): tests/test_micropython_cache.py."""

from __future__ import annotations

import hashlib
import json
import random
import struct

import pytest
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.micropython import REPO, node_missing, run_session
from boardfakes.script import Script

from k210.firmware import k210wire as w

VECTORS = json.loads((REPO / "firmware" / "protocol" / "vectors.json").read_text())
INPUT_LEN = 16


@pytest.fixture(scope="module", autouse=True)
def interpreters() -> None:
    why = node_missing()
    if why:
        pytest.fail(why)


def upload(s: Script, model: bytes, inputs: list, outputs: list, *, damaged: bool = False) -> None:
    sha = hashlib.sha256(model).hexdigest()
    s.send(w.LOAD_BEGIN, {"size": len(model), "sha256": sha, "inputs": inputs, "outputs": outputs})
    half = len(model) // 2
    if damaged:
        s.send(w.LOAD_CHUNK, {"offset": 0, "data": model[:half]}, damage="corrupt")  # dropped: CRC
        s.send(w.LOAD_CHUNK, {"offset": half, "data": model[half:]})  # GAP, detail 0
        s.send(w.LOAD_COMMIT)  # GAP: nothing in yet
    s.send(w.LOAD_CHUNK, {"offset": 0, "data": model[:half]})
    if damaged:
        s.send(w.LOAD_CHUNK, {"offset": 0, "data": model[:half]})  # duplicate
    s.send(w.LOAD_CHUNK, {"offset": half, "data": model[half:]})
    s.send(w.LOAD_COMMIT)


def infer(s: Script, req: int, x: bytes, split: int = 0) -> None:
    if split:
        s.send(w.INFER_CHUNK, {"req": req, "total": len(x), "offset": 0, "data": x[:split]})
    s.send(w.INFER_CHUNK, {"req": req, "total": len(x), "offset": split, "data": x[split:]})


def scripted_session(model: bytes, inputs: list, outputs: list) -> bytes:
    """hello, model info, a damaged upload, inferences, refusals, garbage, reboot and after."""
    s = Script()
    rng = random.Random(7)
    s.send(w.HELLO_REQ)
    s.send(w.MODEL_INFO_REQ)
    infer(s, 1, bytes(INPUT_LEN))  # NO_MODEL
    s.send(w.LOAD_CHUNK, {"offset": 0, "data": b"x"})  # NOT_LOADING
    s.send(w.LOAD_BEGIN, {"size": 1 << 24, "sha256": "00" * 32, "inputs": [], "outputs": []})  # TOO_BIG
    upload(s, model, inputs, outputs, damaged=True)
    x = bytes(range(INPUT_LEN))
    infer(s, 2, x, split=5)
    infer(s, 2, x, split=5)  # the retried final chunk: the same RESULT, no second run
    s.send(w.INFER_CHUNK, {"req": 3, "total": INPUT_LEN, "offset": 4, "data": x[4:]})  # STALE
    infer(s, 4, x + b"!")  # BAD_SIZE
    s.send(w.INFER_CHUNK, {"req": 5, "total": 5000, "offset": 0, "data": bytes(10)})  # TOO_BIG
    s.raw(w.encode_frame(w.HELLO_REQ, 0, 98, bytes(600)))  # longer than max_frame: dropped, no reply
    s.raw(bytes(rng.randrange(256) for _ in range(300)) + b"\x00")  # random garbage, then a delimiter
    infer(s, 6, bytes(i * 3 for i in range(INPUT_LEN)))  # the next good frame is answered
    s.send(0x42)  # UNKNOWN_TYPE
    s.raw(w.encode_frame(w.HELLO_REQ, 0, 99, b"")[:-1] + b"\x00")  # intact
    s.send(w.REBOOT)
    s.raw(bytes(64))  # a host waits for the boot; what was in the UART then is lost (here only delimiters)
    s.send(w.HELLO_REQ)
    s.send(w.MODEL_INFO_REQ)  # the uploaded model is gone after a reboot
    return bytes(s.data)


def vectors_session() -> bytes:
    """Every frame of the shared vectors, and every receiver stream followed by a good HELLO_REQ."""
    s = Script()
    for message in VECTORS["messages"]:
        s.raw(bytes.fromhex(message["frame_hex"]))
    for case in VECTORS["receiver"]:
        s.raw(bytes.fromhex(case["stream_hex"]) + b"\x00")
        s.send(w.HELLO_REQ)
    s.send(w.MODEL_INFO_REQ)
    return bytes(s.data)


def replies(stream: bytes) -> list[tuple[str, int, dict]]:
    return [(w.TYPE_NAMES[t], flags, w.decode_message(t, p)) for _, t, flags, _, p in w.decode_frames(stream)]


V5 = make_arith_kmodel(version=5, mul=3, add=7, input_len=INPUT_LEN, pad=40)
V5_IO = ([(w.DT_UINT8, (1, 4, 4, 1))], [(w.DT_UINT8, (INPUT_LEN,))])


@pytest.fixture(scope="module")
def scripted() -> dict:
    stream = scripted_session(V5, *V5_IO)
    return {name: run_session(name, stream, profile="canmv-kpu") for name in ("cpython", "mp-1.27", "mp-1.10")}


@pytest.mark.parametrize("interpreter", ["mp-1.27", "mp-1.10"])
def test_scripted_session_replies_equal_cpython_byte_for_byte(scripted: dict, interpreter: str) -> None:
    assert scripted[interpreter].out == scripted["cpython"].out
    assert scripted[interpreter].boots == scripted["cpython"].boots == 2


def test_scripted_session_is_served_as_the_protocol_says(scripted: dict) -> None:
    got = replies(scripted["cpython"].out)
    errors = [m["code"] for kind, _, m in got if kind == "ERROR"]
    assert w.E_INTERNAL not in errors  # refusals carry their own code (RunnerError works in MicroPython)
    assert errors == [w.E_NO_MODEL, w.E_NOT_LOADING, w.E_TOO_BIG, w.E_GAP, w.E_GAP, w.E_STALE, w.E_BAD_SIZE,
                      w.E_TOO_BIG, w.E_UNKNOWN_TYPE]
    results = [m for kind, _, m in got if kind == "RESULT"]
    assert [r["req"] for r in results] == [2, 2, 6]
    for r, x in zip(results, (bytes(range(INPUT_LEN)),) * 2 + (bytes(i * 3 for i in range(INPUT_LEN)),)):
        (dtype, shape, data), = w.parse_result_blob(r["data"], r["n_outputs"])
        assert (dtype, shape, data) == (w.DT_UINT8, (INPUT_LEN,), arith_outputs(x, 3, 7)[0])
    hellos = [(flags, m) for kind, flags, m in got if kind == "HELLO"]
    assert [m["kmodel_versions"] for _, m in hellos] == [[3, 4, 5]] * len(hellos)
    assert hellos[-2][0] == w.FLAG_EVENT and hellos[-2][1]["nonce"] != hellos[0][1]["nonce"]  # the reboot
    assert [m["loaded"] for kind, _, m in got if kind == "MODEL_INFO"] == [0, 1, 0]
    old = scripted["mp-1.10"]
    print(f"\nMicroPython 1.10, 2 MiB heap, scripted session: free heap {old.heap_before} before, "
          f"{old.heap_low} lowest, {old.heap_after} after")


def test_shared_vectors_replies_equal_cpython_byte_for_byte() -> None:
    stream = vectors_session()
    ref = run_session("cpython", stream, profile="canmv-kpu")
    assert run_session("mp-1.27", stream, profile="canmv-kpu").out == ref.out
    hellos = [m for kind, _, m in replies(ref.out) if kind == "HELLO"]
    assert len(hellos) >= 1 + len(VECTORS["receiver"])  # boot, the vectors' own HELLO_REQ, one per damaged stream


def test_maixpy_v1_reports_uint8_outputs_of_v3_and_refuses_v5() -> None:
    v3 = make_arith_kmodel(version=3, mul=5, add=1, input_len=4)
    s = Script()
    s.send(w.HELLO_REQ)
    upload(s, v3, [(w.DT_FLOAT32, (4,))], [(w.DT_UINT8, (4,)), (w.DT_FLOAT32, (1,))])
    infer(s, 1, struct.pack("<4f", 1, 2, 3, 200))
    upload(s, V5, *V5_IO)
    stream = bytes(s.data)
    ref = run_session("cpython", stream, profile="maixpy-v1")
    assert run_session("mp-1.27", stream, profile="maixpy-v1").out == ref.out
    got = replies(ref.out)
    assert got[0][2]["backend"] == "maixpy-v1" and got[0][2]["kmodel_versions"] == [3, 4]
    result = next(m for kind, _, m in got if kind == "RESULT")
    records = w.parse_result_blob(result["data"], result["n_outputs"])
    assert records[0] == (w.DT_UINT8, (4,), arith_outputs(bytes([1, 2, 3, 200]), 5, 1)[0])
    assert records[1][0] == w.DT_FLOAT32 and struct.unpack("<f", records[1][2])[0] == 206.0
    errors = [(m["code"], m["detail"]) for kind, _, m in got if kind == "ERROR"]
    assert errors[0] == (w.E_UNSUPPORTED_KMODEL, 5)  # at the first chunk: its header says v5


def test_canmv_v1_0_advertises_v3_v4_only_and_refuses_a_v5_upload_at_its_header() -> None:
    s = Script()
    upload(s, V5, *V5_IO)
    got = replies(run_session("mp-1.27", bytes(s.data), profile="canmv").out)
    assert (got[0][2]["backend"], got[0][2]["kmodel_versions"]) == ("canmv", [3, 4])
    error = next(m for kind, _, m in got if kind == "ERROR")
    assert (error["code"], error["detail"]) == (w.E_UNSUPPORTED_KMODEL, 5)


def test_flash_model_without_model_version_is_a_boot_error() -> None:
    v4 = make_arith_kmodel(version=4, input_len=4)
    config = {"model": 0x300000, "model_size": len(v4), "model_inputs": [(w.DT_FLOAT32, (4,))],
              "model_outputs": [(w.DT_UINT8, (4,))]}
    got = replies(run_session("mp-1.27", b"", profile="maixpy-v1", config=config, flash={0x300000: v4}).out)
    assert got[1][0] == "LOG" and "model_version" in got[1][2]["text"]
    config["model_version"] = 4
    s = Script()
    infer(s, 1, struct.pack("<4f", 1, 2, 3, 4))
    got = replies(run_session("mp-1.27", bytes(s.data), profile="maixpy-v1", config=config,
                              flash={0x300000: v4}).out)
    assert [kind for kind, _, _ in got] == ["HELLO", "ACK", "RESULT"]


def test_maixpy_v1_sizes_float_inputs_to_its_heap_and_refuses_what_it_cannot_hold() -> None:
    """MicroPython 1.10 with a 384 KiB GC heap: HELLO's max_input follows the heap (KPU.forward wants a list
    of boxed floats, 20 bytes each on this 32-bit build, 40 on the K210); a model whose float input the heap
    cannot hold is refused with LOAD_FAILED, not INTERNAL, and the next requests are answered. The harness
    keeps the host stream and the sources in the same heap, so both sessions are padded to one length."""
    padded = 16 << 10
    config = {"max_input": 1 << 20, "max_frame": 1024}
    probe = w.encode_frame(w.HELLO_REQ, 0, 1, b"")
    first = run_session("mp-1.10", probe + bytes(padded - len(probe)), profile="maixpy-v1", config=config,
                        heap=384 << 10, chunk=256)
    limit = replies(first.out)[-1][2]["max_input"]
    assert 4096 < limit < 384 << 10
    s = Script()
    huge = make_arith_kmodel(version=3, input_len=limit)
    upload(s, huge, [(w.DT_FLOAT32, (limit,))], [(w.DT_UINT8, (4,))])  # 4x what fits
    s.send(w.MODEL_INFO_REQ)
    s.send(w.HELLO_REQ)
    run = run_session("mp-1.10", bytes(s.data) + bytes(padded - len(s.data)), profile="maixpy-v1", config=config,
                      heap=384 << 10, chunk=256)
    got = replies(run.out)
    assert got[0][2]["max_input"] == limit
    errors = [m for kind, _, m in got if kind == "ERROR"]
    assert [m["code"] for m in errors] == [w.E_LOAD_FAILED] and "GC heap" in errors[0]["text"]
    assert [m["loaded"] for kind, _, m in got if kind == "MODEL_INFO"] == [0]
    assert got[-1][0] == "HELLO"
    print(f"\nMicroPython 1.10, 384 KiB heap: max_input {limit} B; free heap "
          f"{run.heap_before} before, {run.heap_low} lowest, {run.heap_after} after")
