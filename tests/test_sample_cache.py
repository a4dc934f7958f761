"""Issue 15: the board's sample cache (k210cache.py) and zlib inputs, in the runner, the host planner and
end to end on virtual boards: a damaged entry, a power cut mid-write, eviction, a full card, a board
without storage and an older runner (no caps) never make the board compute on wrong bytes."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.links import ArithBackend, in_process_board

from k210.firmware import k210cache
from k210.firmware import k210wire as w
from k210.host.hil.messages import Hello
from k210.host.hil.samples import PROBE_EVERY, SamplePlanner
from k210.host.virtualboard.storage import StorageArea, StorageSpec, damage_entry
from k210.host.virtualboard.uart import BoardReboot

N = 64  # input bytes of the arithmetic test model


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sample(i: int, n: int = N) -> bytes:
    return bytes((i * 7 + k // 3) & 0xFF for k in range(n))


# -- k210cache on a directory ------------------------------------------------------------------------


def make_cache(tmp_path: Path, capacity: int = 10_000) -> k210cache.SampleCache:
    return k210cache.SampleCache(k210cache.Volume(str(tmp_path / "cache")), capacity)


def test_cache_keeps_checks_and_drops_damaged_entries(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    data = sample(1)
    assert cache.store(sha(data), data)
    buf = bytearray(N)
    assert cache.load(sha(data), buf) == N and bytes(buf) == data
    assert cache.load(sha(b"other"), buf) == k210cache.MISSING
    damage_entry(tmp_path / "cache")
    assert cache.load(sha(data), bytearray(N)) == k210cache.DAMAGED  # the hash no longer matches
    assert os.listdir(tmp_path / "cache") == [] and cache.used == 0  # and the entry is gone
    assert make_cache(tmp_path).load(sha(data), buf) == k210cache.MISSING


def test_keeping_a_sample_again_replaces_a_damaged_copy(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    data = sample(2)
    cache.store(sha(data), data)
    damage_entry(tmp_path / "cache")  # damaged while the board still lists it (no read since)
    assert cache.store(sha(data), data)  # the host sends the bytes again (after a reset, a lost reply)
    buf = bytearray(N)
    assert cache.load(sha(data), buf) == N and bytes(buf) == data and cache.used == N + k210cache.HEAD_LEN


def test_cache_survives_a_reboot_and_removes_half_written_files(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    for i in range(3):
        cache.store(sha(sample(i)), sample(i))
    (tmp_path / "cache" / "0123456789abcdef.tmp").write_bytes(b"K2C1 half a sample")  # power cut mid-write
    again = make_cache(tmp_path)
    assert sorted(os.listdir(tmp_path / "cache")) == sorted(again.order) and len(again.order) == 3
    assert again.load(sha(sample(2)), bytearray(N)) == N


def test_cache_evicts_oldest_first_and_refuses_what_never_fits(tmp_path: Path) -> None:
    entry = N + k210cache.HEAD_LEN
    cache = make_cache(tmp_path, capacity=2 * entry)
    for i in range(3):
        assert cache.store(sha(sample(i)), sample(i))
    assert cache.load(sha(sample(0)), bytearray(N)) == k210cache.MISSING  # evicted
    assert cache.load(sha(sample(2)), bytearray(N)) == N and cache.used == 2 * entry
    assert not cache.store(sha(sample(9, 500)), sample(9, 500))  # bigger than the whole cache
    assert cache.caps_log2() == (2 * entry).bit_length() - 1


def test_full_card_and_power_cut_on_the_storage_area(tmp_path: Path) -> None:
    area = StorageArea(StorageSpec(size=N + 60, write_bps=0, read_bps=0), tmp_path / "sd")
    cache = k210cache.SampleCache(area, 10_000)  # the cache thinks it has room; the card does not
    assert cache.store(sha(sample(1)), sample(1))
    assert not cache.store(sha(sample(2)), sample(2))  # ENOSPC: no entry, no temp file left
    assert sorted(os.listdir(tmp_path / "sd")) == [k210cache.entry_name(sha(sample(1)))]
    cut = StorageArea(StorageSpec(write_bps=0, read_bps=0, cut_at=2), tmp_path / "sd2")
    cache = k210cache.SampleCache(cut, 10_000)
    cache.store(sha(sample(1)), sample(1))
    with pytest.raises(BoardReboot):
        cache.store(sha(sample(2)), sample(2))
    assert any(name.endswith(".tmp") for name in os.listdir(tmp_path / "sd2"))
    rebooted = k210cache.SampleCache(cut, 10_000)
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path / "sd2"))
    assert rebooted.load(sha(sample(2)), bytearray(N)) == k210cache.MISSING
    assert rebooted.load(sha(sample(1)), bytearray(N)) == N


# -- the runner's INFER modes ----------------------------------------------------------------------------


def board(tmp_path: Path, cache: bool = True, inflate: bool = True) -> tuple[Any, Any, ArithBackend]:
    backend = ArithBackend()
    runner, port = in_process_board(backend, cache=make_cache(tmp_path) if cache else None,
                                    inflate=zlib.decompress if inflate else None)
    model = make_arith_kmodel(input_len=N)
    begin = {"size": len(model), "sha256": hashlib.sha256(model).hexdigest(), "inputs": [], "outputs": []}
    send(port, w.LOAD_BEGIN, begin)
    send(port, w.LOAD_CHUNK, {"offset": 0, "data": model})
    send(port, w.LOAD_COMMIT, {})
    return runner, port, backend


def send(port: Any, mtype: int, fields: dict[str, Any], seq: int = 1) -> list[tuple[int, dict[str, Any]]]:
    port.write(w.encode_frame(mtype, 0, seq, w.encode_payload(mtype, fields)))
    return [(t, w.decode_message(t, p)) for _, t, _, _, p in w.decode_frames(port.read(1 << 20))]


def infer(port: Any, req: int, mode: int, stream: bytes, chunk: int = 40) -> tuple[int, dict[str, Any]]:
    replies: list[tuple[int, dict[str, Any]]] = []
    for off in range(0, len(stream), chunk):
        replies = send(port, w.INFER_CHUNK, {"req": req, "total": len(stream), "offset": off, "mode": mode,
                                             "data": stream[off:off + chunk]}, seq=req)
    return replies[-1]


def outputs_of(reply: tuple[int, dict[str, Any]]) -> list:
    t, f = reply
    assert t == w.RESULT, f
    return w.parse_result_blob(f["data"], f["n_outputs"])


def test_hello_announces_what_the_runner_takes(tmp_path: Path) -> None:
    (t, hello), = send(board(tmp_path)[1], w.HELLO_REQ, {})
    assert hello["caps"] & w.CAP_INFLATE and hello["caps"] & w.CAP_CACHE
    assert 1 << (hello["caps"] >> w.CAP_CACHE_LOG2_SHIFT) <= 10_000 < 2 << (hello["caps"] >> w.CAP_CACHE_LOG2_SHIFT)
    (t, old), = send(board(tmp_path / "b", cache=False, inflate=False)[1], w.HELLO_REQ, {})
    assert "caps" not in old and Hello.from_fields(old).caps == 0  # byte-identical to a runner before caps


def test_zlib_keep_and_cached_requests_give_the_plain_result(tmp_path: Path) -> None:
    runner, port, backend = board(tmp_path)
    x = sample(5)
    expected = outputs_of(infer(port, 1, 0, x))
    assert expected[0][2] == arith_outputs(x, 3, 7)[0]
    assert outputs_of(infer(port, 2, w.MODE_ZLIB, zlib.compress(x))) == expected
    assert outputs_of(infer(port, 3, w.MODE_ZLIB | w.MODE_KEEP, sha(x) + zlib.compress(x))) == expected
    assert outputs_of(infer(port, 4, w.MODE_CACHED, sha(x))) == expected
    assert runner.cache.hits == 1 and backend.infer_calls == 4
    plain = outputs_of(infer(port, 5, 0, sample(6)))
    assert outputs_of(infer(port, 6, w.MODE_KEEP, sha(sample(6)) + sample(6))) == plain


def test_nothing_runs_on_bytes_that_fail_a_check(tmp_path: Path) -> None:
    runner, port, backend = board(tmp_path)
    x = sample(5)
    t, err = infer(port, 1, w.MODE_CACHED, sha(x))
    assert (t, err["code"], err["detail"]) == (w.ERROR, w.E_NOT_CACHED, 0)
    t, err = infer(port, 2, w.MODE_KEEP, sha(x) + sample(6))  # the bytes are not the hash's
    assert (t, err["code"]) == (w.ERROR, w.E_HASH_MISMATCH) and runner.cache.stored == 0
    t, err = infer(port, 3, w.MODE_ZLIB, zlib.compress(x)[:-3] + b"\0\0\0")  # adler-32 wrong
    assert (t, err["code"]) == (w.ERROR, w.E_BAD_PAYLOAD)
    t, err = infer(port, 4, w.MODE_ZLIB, zlib.compress(x[:-1]))  # inflates to the wrong size
    assert (t, err["code"], err["detail"]) == (w.ERROR, w.E_BAD_SIZE, N)
    assert backend.infer_calls == 0
    infer(port, 5, w.MODE_KEEP, sha(x) + x)
    damage_entry(tmp_path / "cache")
    t, err = infer(port, 6, w.MODE_CACHED, sha(x))
    assert (t, err["code"], err["detail"]) == (w.ERROR, w.E_NOT_CACHED, 1) and backend.infer_calls == 1


def test_a_runner_without_storage_or_zlib_refuses_those_modes(tmp_path: Path) -> None:
    runner, port, backend = board(tmp_path, cache=False, inflate=False)
    for mode, stream in ((w.MODE_CACHED, sha(sample(1))), (w.MODE_ZLIB, zlib.compress(sample(1)))):
        t, err = infer(port, 1, mode, stream)
        assert (t, err["code"]) == (w.ERROR, w.E_UNSUPPORTED)
    assert backend.infer_calls == 0


# -- the host's planner ------------------------------------------------------------------------------------


def hello(caps: int) -> Hello:
    return Hello(1, 1024, 4096, 1, 0, 1 << 16, 0, 0, (5,), "t", "0", "t", caps)


def test_old_runner_gets_plain_requests() -> None:
    planner = SamplePlanner(hello(0), lambda i: sample(i))
    assert [planner.request(i) for i in range(3)] == [(0, sample(i)) for i in range(3)]


def test_planner_learns_cold_and_warm_caches_and_keeps_what_fits() -> None:
    caps = w.CAP_INFLATE | w.CAP_CACHE | (20 << w.CAP_CACHE_LOG2_SHIFT)  # 1 MiB of cache
    planner = SamplePlanner(hello(caps), lambda i: bytes(1000))
    assert planner.request(0) == (w.MODE_CACHED, sha(bytes(1000)))  # a probe
    mode, stream = planner.request(1)  # while the probe is out: bytes (compressed: they shrink)
    assert mode == w.MODE_ZLIB | w.MODE_KEEP and stream[:32] == sha(bytes(1000))
    assert zlib.decompress(stream[32:]) == bytes(1000)
    planner.miss(0, damaged=False)  # cold: one probe every PROBE_EVERY images
    modes = [planner.request(i)[0] for i in range(2, 2 + PROBE_EVERY)]
    assert modes.count(w.MODE_CACHED) == 1 and modes[-1] == w.MODE_CACHED
    assert planner.request(0)[0] == w.MODE_ZLIB | w.MODE_KEEP  # the missed image goes with its bytes
    planner.answered(PROBE_EVERY + 1, w.MODE_CACHED)  # the probe hit: warm
    assert planner.request(40)[0] == w.MODE_CACHED
    planner.miss(40, damaged=True)  # one damaged entry: still warm
    planner.miss(41, damaged=False)  # one miss: still warm; two in a row: cold
    assert planner.request(42)[0] == w.MODE_CACHED
    planner.miss(42, damaged=False)
    assert planner.state == "cold"
    small = SamplePlanner(hello(w.CAP_CACHE | (12 << w.CAP_CACHE_LOG2_SHIFT)), lambda i: bytes(1000))
    assert [small.request(i)[0] for i in range(5)] == [w.MODE_CACHED, w.MODE_KEEP, w.MODE_KEEP, 0, 0]
    assert [small.keepable[i] for i in range(5)] == [True, True, True, False, False]  # 4096 B: three entries
    incompressible = SamplePlanner(hello(w.CAP_INFLATE), lambda i: os.urandom(1000))
    assert incompressible.request(0)[0] == 0  # random bytes do not shrink: sent as they are


# -- end to end on virtual boards ----------------------------------------------------------------------------


def journal_outputs(path: Path) -> dict[int, str]:
    lines = path.read_text().splitlines()[1:]
    return {e["i"]: "|".join(t["data"] for t in e["out"]) for e in map(json.loads, lines) if "i" in e}


def test_first_and_second_run_equal_the_simulator_despite_a_power_cut_and_a_damaged_entry(tmp_path: Path) -> None:
    from hil_support import tiny_models

    from k210.host.hil.run import HilConfig, run_hil

    m = tiny_models()
    n, sd = 30, tmp_path / "sd"

    def run(name: str, board_args: list[str]) -> tuple[dict, dict, dict[int, str]]:
        journal = tmp_path / f"{name}.jsonl"
        report = run_hil(HilConfig(kmodel=str(m["kmodel_a"]), virtual=True, dataset="xo", limit=n, no_reference=True,
                                   workers=1, journal=str(journal), board_args=board_args))
        return report, report["boards"][0], journal_outputs(journal)

    # The simulator's outputs are what the uncached, uncompressed run gives (test_hil: bit-identical).
    report, first, got = run("first", ["--sd-dir", str(sd), "--sd-cut-at", "4"])  # the 4th card write loses power
    assert report["count"] == n and report["board_vs_simulator"]["bit_identical"] == 1.0
    assert first["resets"] >= 1 and first["samples"]["kept"] >= n and first["samples"]["zlib"] >= n
    damage_entry(sd, 7)
    report, second, again = run("second", ["--sd-dir", str(sd)])
    s = second["samples"]
    assert again == got and report["board_vs_simulator"]["bit_identical"] == 1.0
    assert s["damaged"] == 1 and s["hits"] >= n // 2 and s["stream_bytes"] < first["samples"]["stream_bytes"] / 2
    assert not any(p.suffix == ".tmp" for p in sd.iterdir())


def test_a_slow_card_write_is_waited_for_not_resent(tmp_path: Path) -> None:
    """A KEEP request's card write (here ~100 ms, far above the line's learnt reply time) is the board's job,
    not a lost reply: the host must wait for it, not resend every image (it did, before the job timer)."""
    from hil_support import tiny_models

    from k210.host.hil.run import HilConfig, run_hil

    n = 24
    report = run_hil(HilConfig(kmodel=str(tiny_models()["kmodel_a"]), virtual=True, dataset="xo", limit=n,
                               no_reference=True, workers=1, journal=str(tmp_path / "j.jsonl"),
                               board_args=["--sd-dir", str(tmp_path / "sd"), "--sd-write-kbps", "8"]))
    board = report["boards"][0]
    assert report["count"] == n and board["samples"]["kept"] >= n and board["resets"] == 0
    assert board["retries"] <= n // 6, board  # a few timer resends on a busy machine at most, not one per image


# -- the C runner's inflate (firmware/c/core/inflate.c), held to Python's zlib ------------------------------


@pytest.fixture(scope="module")
def inflate_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess

    from boardfakes.links import require_tool

    gcc = require_tool("gcc")
    c = Path(__file__).resolve().parents[1] / "firmware" / "c"
    exe = tmp_path_factory.mktemp("inflate") / "inflate_tool"
    subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                    str(c / "host" / "inflate_tool.c"), str(c / "core" / "inflate.c")], check=True)
    return exe


def c_inflate(exe: Path, stream: bytes) -> tuple[int, bytes]:
    import subprocess

    result = subprocess.run([str(exe)], input=stream, capture_output=True, timeout=30)
    return result.returncode, result.stdout


def test_c_inflate_matches_zlib_and_refuses_damage(inflate_tool: Path) -> None:
    import random

    rng = random.Random(15)
    kinds = [lambda n: os.urandom(n), lambda n: bytes(rng.randrange(4) for _ in range(n)),
             lambda n: bytes((k // 5) & 0xFF for k in range(n)), lambda n: sample(3, n)]
    for i in range(24):  # stored (level 0 and random bytes), fixed (short) and dynamic Huffman blocks
        data = kinds[i % 4](rng.choice((0, 1, 100, 5000, 49152, 70000)))
        stream = zlib.compress(data, (0, 1, 6, 9)[i % 4])
        assert c_inflate(inflate_tool, stream) == (0, data)
        damaged = bytearray(stream)
        damaged[rng.randrange(2, len(damaged))] ^= 1 << rng.randrange(8)
        code, out = c_inflate(inflate_tool, bytes(damaged))
        assert code != 0 or out == data, "a damaged stream inflated to other bytes"
        assert c_inflate(inflate_tool, stream[:-5])[0] != 0  # truncated
    assert c_inflate(inflate_tool, b"\x78\x9c\x03\x00\x00\x00\x00\x01") == (0, b"")
    assert c_inflate(inflate_tool, b"\x78\x9d\x03\x00\x00\x00\x00\x01")[0] == 2  # header check fails
