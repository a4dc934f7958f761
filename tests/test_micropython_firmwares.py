"""firmware/maixpy/main.py on each firmware's KPU API as its C source defines it (issue 21), in real
MicroPython 1.10 and 1.27 and in CPython: it boots and serves on MaixPy-v1, CanMV main and CanMV
feat/kpu, hands back every output feat/kpu can return, refuses a MaixPy-v1 set_outputs that says
False, and serves an input of exactly its advertised max_input on each firmware's real GC heap
(MicroPython 1.10 with that heap; 1.27's grows on demand). The stand-ins (boardfakes/mp_stubs.py)
name the source file and function each follows."""

from __future__ import annotations

import hashlib
import re
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest
from boardfakes import mp_stubs, script
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.micropython import FIRMWARE_HEAP, node_missing, run_session

from k210.core import firmwares
from k210.firmware import k210wire as w

INTERPRETERS = ("cpython", "mp-1.27", "mp-1.10")


@pytest.fixture(scope="module", autouse=True)
def interpreters() -> None:
    why = node_missing()
    if why:
        pytest.fail(why)


class Script(script.Script):
    def upload(self, model: bytes, inputs: list, outputs: list) -> None:
        self.send(w.LOAD_BEGIN, {"size": len(model), "sha256": hashlib.sha256(model).hexdigest(),
                                 "inputs": inputs, "outputs": outputs})
        self.send(w.LOAD_CHUNK, {"offset": 0, "data": model})
        self.send(w.LOAD_COMMIT)

    def infer(self, req: int, x: bytes, piece: int = 200) -> None:
        for at in range(0, len(x), piece):
            self.send(w.INFER_CHUNK, {"req": req, "total": len(x), "offset": at, "data": x[at:at + piece]})


def replies(stream: bytes) -> list[tuple[str, dict]]:
    return [(w.TYPE_NAMES[t], w.decode_message(t, p)) for _, t, _, _, p in w.decode_frames(stream)]


def all_interpreters(stream: bytes, profile: str, **kw: object) -> list[tuple[str, dict]]:
    ref = run_session("cpython", stream, profile=profile, **kw)
    for name in INTERPRETERS[1:]:
        assert run_session(name, stream, profile=profile, **kw).out == ref.out, name
    return replies(ref.out)


def results(got: list[tuple[str, dict]]) -> list[list[tuple]]:
    return [w.parse_result_blob(m["data"], m["n_outputs"]) for kind, m in got if kind == "RESULT"]


def test_feat_kpu_maix_kpu_is_a_factory_function_as_in_modMaix_c() -> None:
    maix = mp_stubs.make_canmv_feat_kpu(open, {})
    assert not isinstance(maix.KPU, type) and not hasattr(maix.KPU, "get_outputs")
    kpu = maix.KPU()
    assert all(hasattr(kpu, name) for name in ("load", "run", "get_outputs", "deinit"))
    assert not hasattr(kpu, "load_kmodel")


def test_feat_kpu_boots_and_returns_every_output_of_a_two_output_kmodel() -> None:
    x = bytes(range(16))  # outputs 7..52: no byte pattern is a float NaN, so float re-packing is exact
    s = Script()
    s.send(w.HELLO_REQ)
    s.upload(make_arith_kmodel(version=5, mul=3, add=7, input_len=16), [(w.DT_UINT8, (1, 4, 4, 1))],
             [(w.DT_UINT8, (1, 16)), (w.DT_FLOAT32, (1,))])
    s.infer(1, x)
    got = all_interpreters(bytes(s.data), "canmv-kpu")
    assert got[0] == ("HELLO", got[0][1]) and got[0][1]["backend"] == "canmv-kpu"
    assert got[0][1]["kmodel_versions"] == [3, 4, 5]
    info = next(m for kind, m in got if kind == "MODEL_INFO")
    assert [(o[0], tuple(o[1])) for o in info["outputs"]] == [(w.DT_UINT8, (1, 16)),
                                                                          (w.DT_FLOAT32, (1,))]
    (out0, out1), = results(got)
    want0, total = arith_outputs(x, 3, 7)
    assert out0 == (w.DT_UINT8, (1, 16), want0)
    assert out1[:2] == (w.DT_FLOAT32, (1,)) and struct.unpack("<f", out1[2]) == (total,)


def test_feat_kpu_uint8_output_not_a_multiple_of_4_comes_back_as_the_uint8_bytes_it_returns() -> None:
    """maix_kpu.c k210_kpu_get_outputs divides the byte count by 4: of 10 class scores the first 8 come
    back, and the runner says so (MODEL_INFO and RESULT: uint8 [8]), rather than 2 float32 values."""
    x = bytes(range(1, 11))
    s = Script()
    s.upload(make_arith_kmodel(version=5, mul=1, add=0, input_len=10), [(w.DT_UINT8, (1, 10))],
             [(w.DT_UINT8, (1, 10)), (w.DT_FLOAT32, (1,))])
    s.infer(1, x)
    got = all_interpreters(bytes(s.data), "canmv-kpu")
    info = next(m for kind, m in got if kind == "MODEL_INFO")
    assert [(o[0], tuple(o[1])) for o in info["outputs"]] == [(w.DT_UINT8, (8,)), (w.DT_FLOAT32, (1,))]
    (out0, out1), = results(got)
    assert out0 == (w.DT_UINT8, (8,), x[:8])
    assert struct.unpack("<f", out1[2]) == (float(sum(x)),)


def test_canmv_main_boots_and_serves_output_0_through_its_input_file() -> None:
    x = bytes(range(20, 36))
    s = Script()
    s.send(w.HELLO_REQ)
    s.upload(make_arith_kmodel(version=4, mul=2, add=5, input_len=16), [(w.DT_UINT8, (1, 16))],
             [(w.DT_UINT8, (1, 16)), (w.DT_FLOAT32, (1,))])
    s.infer(1, x)
    s.infer(2, x[::-1])
    got = all_interpreters(bytes(s.data), "canmv")
    assert (got[0][1]["backend"], got[0][1]["kmodel_versions"]) == ("canmv", [3, 4])
    info = next(m for kind, m in got if kind == "MODEL_INFO")
    # run_with_output returns output 0 only (Maix_kpu.c: kpu_get_output(ctx, 0, ...)).
    assert [(o[0], tuple(o[1])) for o in info["outputs"]] == [(w.DT_UINT8, (1, 16))]
    assert results(got) == [[(w.DT_UINT8, (1, 16), arith_outputs(x, 2, 5)[0])],
                            [(w.DT_UINT8, (1, 16), arith_outputs(x[::-1], 2, 5)[0])]]


def test_maixpy_v1_set_outputs_false_and_a_v4_without_outputs_are_load_failures() -> None:
    v4 = make_arith_kmodel(version=4, input_len=4)
    s = Script()
    s.upload(v4, [(w.DT_FLOAT32, (1, 4))], [(w.DT_UINT8, (1, 5))])  # 5 elements: Maix_kpu.c says False
    s.send(w.MODEL_INFO_REQ)
    s.upload(v4, [(w.DT_FLOAT32, (1, 4))], [])  # no shapes to set: every forward would fail
    s.upload(v4, [(w.DT_FLOAT32, (1, 4))], [(w.DT_UINT8, (1, 4))])
    s.infer(1, struct.pack("<4f", 1, 2, 3, 4))
    got = all_interpreters(bytes(s.data), "maixpy-v1")
    errors = [m for kind, m in got if kind == "ERROR"]
    assert [m["code"] for m in errors] == [w.E_LOAD_FAILED, w.E_LOAD_FAILED]
    assert "set_outputs" in errors[0]["text"] and "False" in errors[0]["text"]
    assert "set_outputs" in errors[1]["text"]
    assert [m["loaded"] for kind, m in got if kind == "MODEL_INFO"] == [0, 1]  # the request, then the good load
    (out0,), = results(got)
    assert out0[2] == struct.pack("<4f", *arith_outputs(bytes([1, 2, 3, 4]), 3, 7)[0])


def test_maixpy_v1_hands_forward_every_input_float_in_runs_of_64_and_a_tail() -> None:
    """main.py unpacks KPU.forward's list 64 floats at a time (fill_floats), the rest in one more call: 100
    values (a run and a tail of 36) reach the KPU in order, every one of them (output 0 is per value), twice
    (the second fill reuses the list whose floats the first released)."""
    x = bytes((7 * i + 3) % 256 for i in range(100))
    s = Script()
    s.upload(make_arith_kmodel(version=3, mul=3, add=1, input_len=100), [(w.DT_FLOAT32, (100,))],
             [(w.DT_UINT8, (100,)), (w.DT_FLOAT32, (1,))])
    s.infer(1, struct.pack("<100f", *x))
    s.infer(2, struct.pack("<100f", *x[::-1]))
    got = all_interpreters(bytes(s.data), "maixpy-v1")
    assert [r[0] for r in results(got)] == [(w.DT_UINT8, (100,), arith_outputs(x, 3, 1)[0]),
                                            (w.DT_UINT8, (100,), arith_outputs(x[::-1], 3, 1)[0])]


CARD = 2 << 20
CONFIG = {"max_frame": 1024, "max_input": 1 << 20}


def heap_run(profile: str, stream: bytes, stop_after: int = 0):
    return run_session("mp-1.10", stream, profile=profile, config=CONFIG, board_heap=FIRMWARE_HEAP[profile],
                       card_bytes=CARD, chunk=1024, timeout=900, stop_after=stop_after)


HELLO = w.encode_frame(w.HELLO_REQ, 0, 0, b"")


def at_limit(profile: str, limit: int) -> bytes:
    """HELLO, upload a model whose outputs are small (as a camera model's), infer an input of exactly
    `limit` bytes, ask for one byte more, HELLO. The filler bytes are b"A": the session's text (its repr)
    stays about as long as the stream, within what the 1.10 build's stack takes."""
    if profile == "maixpy-v1":  # KPU.forward takes floats: the input is float32 (b"AAAA" is 12.078...)
        model = make_arith_kmodel(version=3, input_len=16)
        inputs = [(w.DT_FLOAT32, (limit // 4,))]
        x = struct.pack("<16f", *range(16)) + b"A" * (limit - 64)
    else:
        model = make_arith_kmodel(version=4 if profile == "canmv" else 5, input_len=16)
        inputs = [(w.DT_UINT8, (limit,))]
        x = bytes(range(16)) + b"A" * (limit - 16)
    s = Script()
    s.upload(model, inputs, [(w.DT_UINT8, (16,))])
    s.infer(1, x, piece=900)
    s.send(w.INFER_CHUNK, {"req": 2, "total": limit + 1, "offset": 0, "data": b"x"})
    s.send(w.HELLO_REQ)
    return HELLO + bytes(s.data)


def advertised(profile: str, stream: bytes) -> int:
    """HELLO's max_input when the board reads only the stream's first HELLO_REQ (same heap as the whole)."""
    return replies(heap_run(profile, stream, stop_after=len(HELLO)).out)[-1][1]["max_input"]


BUILDS = {"maixpy-v1": firmwares.MAIXPY.builds[0], "canmv": firmwares.CANMV.builds[0],
          "canmv-kpu": firmwares.CANMV.builds[1]}


def served_at_limit(got: list[tuple[str, dict]], limit: int) -> None:
    """Both HELLOs say `limit`, the input of exactly that size comes back as a RESULT, and the one of a
    byte more is refused (TOO_BIG with the limit) at its first chunk, before anything runs."""
    assert got[0][1]["max_input"] == got[1][1]["max_input"] == got[-1][1]["max_input"] == limit > 32 << 10
    errors = [m for kind, m in got if kind == "ERROR"]
    assert [(m["code"], m["req"], m["detail"]) for m in errors] == [(w.E_TOO_BIG, 2, limit)], errors
    (out0,), = results(got)
    assert out0[2] == arith_outputs(bytes(range(16)), 3, 7)[0]


def measure_at_limit(profile: str) -> tuple[int, object, bytes]:
    """The input size HELLO advertises on the firmware's heap, the 1.10 run that serves exactly it, and
    the same stream's replies in 1.27 (with max_input set to it)."""
    limit = 64 << 10
    for _ in range(5):  # the session's own text moves the harness's heap a little
        again = advertised(profile, at_limit(profile, limit))
        if again == limit:
            break
        limit = again
    stream = at_limit(profile, limit)
    run = heap_run(profile, stream)
    out_127 = run_session("mp-1.27", stream, profile=profile, config=dict(CONFIG, max_input=limit),
                          chunk=1024, timeout=300).out
    return limit, run, out_127


@pytest.fixture(scope="module")
def at_limit_runs(request):
    """The firmwares this session tests measured at once: each is a node process of its own (minutes
    each, one core), so together they take about the slowest one's time on two cores."""
    wanted = {item.callspec.params["profile"] for item in request.session.items
              if item.originalname == "test_an_input_of_exactly_max_input_is_served_on_the_firmwares_real_heap"}
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        yield {profile: pool.submit(measure_at_limit, profile) for profile in sorted(wanted)}


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("profile", ["maixpy-v1", "canmv", "canmv-kpu"])
def test_an_input_of_exactly_max_input_is_served_on_the_firmwares_real_heap(profile: str, at_limit_runs) -> None:
    """HELLO's max_input on the firmware's real GC heap (MaixPy-v1 0x80000, CanMV 0xBB9B0) is an input
    the board then serves: the model is loaded, the input of exactly that size inferred, a RESULT comes
    back, and one byte more is refused before anything runs; that figure is the registry's max_input
    (core/firmwares.py: what lint, compile and hil say before a run). The same stream then runs in 1.27
    with max_input set to it (1.27's WebAssembly heap grows on demand: there it checks the code path at
    that size, not the heap). Minutes: MicroPython 1.10 in WebAssembly decodes a few hundred KB of frames
    byte by byte."""
    limit, run, out_127 = at_limit_runs[profile].result()
    served_at_limit(replies(run.out), limit)
    assert BUILDS[profile].max_input == limit, "core/firmwares.py's max_input is not what 1.10 serves"
    served_at_limit(replies(out_127), limit)
    got = replies(run.out)
    board_used = int(re.search(r"BALLAST (\d+)", run.stdout).group(1))
    print(f"\n{profile}: GC heap 0x{FIRMWARE_HEAP[profile]:X}, MicroPython 1.10: max_input {limit} B; lowest free "
          f"heap at a UART read {run.heap_low} B ({FIRMWARE_HEAP[profile] - run.heap_low} B used); modules and "
          f"stubs at boot {board_used} B; stream {got[0][1].get('caps')}")
