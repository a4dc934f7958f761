"""Issue 15 in the C runner: HELLO caps, INFER modes ZLIB/KEEP/CACHED and the sample cache in a flash region
(firmware/c/core/samplestore.h), here in the host build's file-backed region.

* `k210 hil --board-cmd` twice on the same images: the second run sends hashes only, and every output equals
  the uncached `--no-cache --no-zlib` run's; a damaged entry is resent and the outputs stay right.
* A power cut at any point of an entry's write never leaves an entry that is served.
* The same scripted byte streams with modes get the same replies from the C runner and the MaixPy runner
  (k210runner + k210cache), as tests/test_runner_parity.py checks for mode 0.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.links import ArithBackend, build_c, in_process_board, require_tool
from test_runner_parity import comparable

from k210.firmware import k210cache
from k210.firmware import k210wire as w

INPUT_LEN = 784  # the arithmetic model's input bytes: an MNIST-sized sample
IMAGES = 40
CACHE_BYTES = 256 * 1024
HEAD_LEN = 48  # samplestore.h: "K2S1", u32 size, u32 seq, SHA-256, u32 commit
CUT_EXIT = 3  # host/file_flash.h: the exit status of a simulated power cut


@pytest.fixture(scope="module")
def runner_exe() -> Path:
    require_tool("gcc")
    return build_c("host") / "k210_runner_host"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sample(i: int, n: int = INPUT_LEN) -> bytes:
    return bytes((i * 37 + k * (i | 1)) & 0xFF for k in range(n))


# -- the region's layout, read independently of the C code ------------------------------------------------


def entries(region: bytes) -> list[dict[str, Any]]:
    """Committed entries in a region file, as PROTOCOL.md 4.1 describes the layout (a circular log)."""
    ring = region + region  # an entry may wrap from the region's end to its start
    found, at = [], 0
    while 0 <= (at := ring.find(b"K2S1", at)) < len(region):
        head = ring[at:at + HEAD_LEN]
        if int.from_bytes(head[44:48], "little") == zlib.crc32(head[:44]):
            size = int.from_bytes(head[4:8], "little")
            found.append({"at": at, "size": size, "seq": int.from_bytes(head[8:12], "little"),
                          "sha": head[12:44], "tensor": ring[at + HEAD_LEN:at + HEAD_LEN + size]})
        at += 1
    return found


# -- k210 hil, first and second run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache") / "arith.kmodel"
    path.write_bytes(make_arith_kmodel(version=5, input_len=INPUT_LEN))
    return path


def hil(kmodel: Path, board: list[str], golden: list[str], journal: Path, *extra: str) -> dict:
    """`k210 hil` as a user runs it, with a second host runner as the golden board (the arithmetic model is
    no kmodel the simulator runs); the JSON report."""
    done = subprocess.run([sys.executable, "-m", "k210.host.cli", "hil", str(kmodel), "--board-cmd",
                           shlex.join(board), "--golden-board-cmd", shlex.join(golden), "--upload", "--dataset",
                           "random", "--limit", str(IMAGES), "--connect-timeout", "30", "--journal", str(journal),
                           "--json", *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["result"]
    assert report["passed"] and report["count"] == IMAGES
    return report


def journal_outputs(path: Path) -> dict[int, str]:
    lines = path.read_text().splitlines()[1:]
    return {e["i"]: "|".join(t["data"] for t in e["out"]) for e in map(json.loads, lines) if "i" in e}


def test_second_hil_run_sends_hashes_only_and_a_damaged_entry_is_resent(runner_exe: Path, kmodel: Path,
                                                                        tmp_path: Path) -> None:
    region = tmp_path / "cache.bin"
    board = [str(runner_exe), "--pty", "--exit-with-parent", "--cache-file", str(region), "--cache-bytes",
             str(CACHE_BYTES)]
    golden = [str(runner_exe), "--pty", "--exit-with-parent", "--no-inflate"]  # no caps: plain requests

    def run(name: str, *extra: str) -> tuple[dict, dict[int, str]]:
        report = hil(kmodel, board, golden, tmp_path / f"{name}.jsonl", *extra)
        return report["boards"][0], journal_outputs(tmp_path / f"{name}.jsonl")

    plain, expected = run("plain", "--no-cache", "--no-zlib")
    assert plain["samples"]["raw"] == IMAGES and not entries(region.read_bytes())
    assert plain["caps"] & w.CAP_INFLATE and plain["caps"] & w.CAP_CACHE
    assert len(expected) == IMAGES

    first, got = run("first")
    assert got == expected and first["samples"]["kept"] == IMAGES
    kept = entries(region.read_bytes())
    assert len(kept) == IMAGES and all(sha(e["tensor"]) == e["sha"] for e in kept)
    assert sorted(e["seq"] for e in kept) == list(range(kept[0]["seq"], kept[0]["seq"] + IMAGES))

    second, got = run("second")
    s = second["samples"]
    assert got == expected
    assert (s["raw"], s["zlib"], s["hits"], s["stream_bytes"]) == (0, 0, IMAGES, 32 * IMAGES)  # no image bytes
    assert second["bytes_to_board"] < first["bytes_to_board"] / 5

    data = bytearray(region.read_bytes())
    damaged = kept[7]
    data[damaged["at"] + HEAD_LEN + damaged["size"] // 2] ^= 0x5A  # a bit gone bad under a valid header
    region.write_bytes(bytes(data))
    third, got = run("third")
    s = third["samples"]
    assert got == expected  # the damaged entry never fed the model
    assert (s["damaged"], s["hits"], s["raw"] + s["zlib"]) == (1, IMAGES - 1, 1) and s["kept"] == 1
    fourth, got = run("fourth")
    assert got == expected and fourth["samples"]["hits"] == IMAGES  # kept again after the resend


# -- power cuts -------------------------------------------------------------------------------------------------


def frames_for(*requests: tuple[int, dict[str, Any]]) -> bytes:
    return b"".join(w.encode_frame(t, 0, seq, w.encode_payload(t, f)) for seq, (t, f) in enumerate(requests, 1))


def load_model(input_len: int = INPUT_LEN) -> list[tuple[int, dict[str, Any]]]:
    model = make_arith_kmodel(version=5, input_len=input_len)
    return [(w.LOAD_BEGIN, {"size": len(model), "sha256": sha(model).hex(), "inputs": [], "outputs": []}),
            (w.LOAD_CHUNK, {"offset": 0, "data": model}), (w.LOAD_COMMIT, {})]


def infer(req: int, mode: int, stream: bytes, chunk: int = 400) -> list[tuple[int, dict[str, Any]]]:
    return [(w.INFER_CHUNK, {"req": req, "total": len(stream), "offset": off, "mode": mode,
                             "data": stream[off:off + chunk]}) for off in range(0, len(stream), chunk)]


def keep(req: int, x: bytes) -> list[tuple[int, dict[str, Any]]]:
    return infer(req, w.MODE_KEEP, sha(x) + x)


def cached(req: int, x: bytes) -> list[tuple[int, dict[str, Any]]]:
    return infer(req, w.MODE_CACHED, sha(x))


def session(exe: Path, region: Path, *requests: tuple[int, dict[str, Any]], cut_after: int = 0,
            region_bytes: int = 64 * 1024) -> tuple[int, dict]:
    """One boot of the host runner on the region: (exit status, the final reply to each req)."""
    argv = [str(exe), "--stdio", "--cache-file", str(region), "--cache-bytes", str(region_bytes)]
    if cut_after:
        argv += ["--cache-cut-after", str(cut_after)]
    done = subprocess.run(argv, input=frames_for(*requests), capture_output=True, timeout=60)
    last: dict[int, tuple[int, dict]] = {}
    for _, mtype, _, _, payload in w.decode_frames(done.stdout):
        fields = w.decode_message(mtype, payload)
        if mtype in (w.RESULT, w.ERROR):
            last[fields["req"]] = (mtype, fields)
    return done.returncode, last


def expect_result(reply: tuple[int, dict], x: bytes) -> None:
    mtype, fields = reply
    assert mtype == w.RESULT, fields
    (_, _, out0), (_, _, total) = w.parse_result_blob(fields["data"], fields["n_outputs"])
    out0_expected, total_expected = arith_outputs(x, 3, 7)
    assert out0 == out0_expected and total == struct.pack("<f", total_expected)


def test_a_power_cut_at_any_point_of_a_write_never_serves_a_partial_entry(runner_exe: Path, tmp_path: Path) -> None:
    a, b, c, d = (sample(i) for i in range(4))
    base = tmp_path / "base.bin"
    code, replies = session(runner_exe, base, *load_model(), *keep(1, a), *keep(2, b))
    assert code == 0 and all(replies[r][0] == w.RESULT for r in (1, 2))
    entry = HEAD_LEN + INPUT_LEN  # bytes programmed per entry
    # Into the header, right before and after the header's last byte, through the tensor, and into the commit word.
    for cut in (1, 30, 43, 44, 45, 300, entry - 5, entry - 4, entry - 3, entry - 1):
        region = tmp_path / f"cut{cut}.bin"
        region.write_bytes(base.read_bytes())
        code, replies = session(runner_exe, region, *load_model(), *keep(3, c), cut_after=cut)
        assert code == CUT_EXIT and 3 not in replies, f"cut after {cut} bytes: the board should have died"
        assert all(e["sha"] != sha(c) for e in entries(region.read_bytes())), cut  # nothing committed
        code, replies = session(runner_exe, region, *load_model(), *cached(4, c), *cached(5, a), *cached(6, b),
                                *keep(7, d), *cached(8, d))
        assert code == 0
        assert replies[4][0] == w.ERROR and (replies[4][1]["code"], replies[4][1]["detail"]) == (w.E_NOT_CACHED, 0)
        for req, x in ((5, a), (6, b), (7, d), (8, d)):  # the log goes on after the cut write
            expect_result(replies[req], x)
        code, replies = session(runner_exe, region, *load_model(), *cached(9, d), *cached(10, c))
        expect_result(replies[9], d)  # and what was kept after the cut is found after the next boot
        assert replies[10][1]["code"] == w.E_NOT_CACHED
    # A cut after the commit word: the entry is whole and is served.
    region = tmp_path / "whole.bin"
    region.write_bytes(base.read_bytes())
    code, _ = session(runner_exe, region, *load_model(), *keep(3, c), cut_after=entry)
    assert code == CUT_EXIT
    _, replies = session(runner_exe, region, *load_model(), *cached(4, c))
    expect_result(replies[4], c)


def test_the_log_wraps_and_drops_the_oldest_entries(runner_exe: Path, tmp_path: Path) -> None:
    region = tmp_path / "ring.bin"
    xs = [sample(i) for i in range(200)]  # 200 * 832 bytes: 2.5 laps of a 64 KiB region
    requests = load_model()
    for i, x in enumerate(xs):
        requests += keep(i + 1, x)
    code, replies = session(runner_exe, region, *requests)
    assert code == 0 and all(replies[i + 1][0] == w.RESULT for i in range(len(xs)))
    kept = entries(region.read_bytes())
    newest = sorted(kept, key=lambda e: e["seq"])[-60:]
    assert [e["sha"] for e in newest] == [sha(x) for x in xs[-60:]]  # the last 60 (~49 KiB) all survive
    probe = [cached(1000 + i, x) for i, x in enumerate(xs)]
    code, replies = session(runner_exe, region, *load_model(), *[r for p in probe for r in p])
    hits = [i for i in range(len(xs)) if replies[1000 + i][0] == w.RESULT]
    assert hits == list(range(hits[0], len(xs))) and len(hits) >= 60  # a tail of the newest, oldest gone
    for i in hits:
        expect_result(replies[1000 + i], xs[i])


# -- C and Python runners, same streams, same replies ---------------------------------------------------------

N = 300  # parity model's input bytes
CHUNK = 200  # data bytes per chunk: the parity boards' frames are 256 bytes


def parity_script() -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, dict[str, Any]]]]:
    """Two sessions (the second after both caches had an entry damaged)."""
    x, y, z = sample(1, N), sample(2, N), sample(3, N)
    zx = zlib.compress(x, 9)
    first: list[tuple[int, dict[str, Any]]] = [*load_model(N)]
    def req(r: int, mode: int, stream: bytes, chunk: int = CHUNK) -> list[tuple[int, dict[str, Any]]]:
        return infer(r, mode, stream, chunk)

    def chunk(r: int, mode: int, total: int, offset: int, data: bytes) -> list[tuple[int, dict[str, Any]]]:
        return [(w.INFER_CHUNK, {"req": r, "total": total, "offset": offset, "mode": mode, "data": data})]

    first: list[tuple[int, dict[str, Any]]] = [*load_model(N)]
    first += req(1, w.MODE_ZLIB, zx, chunk=len(zx) // 2 + 1)  # two chunks
    first += req(2, w.MODE_ZLIB, zx[:-4] + bytes(4))  # Adler-32 wrong: BAD_PAYLOAD
    first += req(3, w.MODE_ZLIB, zlib.compress(x[:-1]))  # inflates to N - 1 bytes: BAD_SIZE
    first += req(4, w.MODE_ZLIB, b"not a zlib stream")  # BAD_PAYLOAD
    first += req(5, w.MODE_CACHED, sha(x))  # NOT_CACHED 0
    first += req(6, w.MODE_CACHED, sha(x) + b"!")  # CACHED is 32 bytes: BAD_SIZE 32
    first += req(7, w.MODE_CACHED | w.MODE_ZLIB, sha(x))  # CACHED alone: BAD_SIZE 32
    first += req(8, w.MODE_KEEP, sha(y) + x)  # HASH_MISMATCH, nothing kept
    first += req(9, w.MODE_CACHED, sha(y))  # NOT_CACHED 0
    first += req(10, w.MODE_KEEP, sha(x) + x, chunk=20)  # the hash split across chunks
    first += req(10, w.MODE_KEEP, sha(x) + x, chunk=20)[-1:]  # retried final chunk: same RESULT
    first += req(11, w.MODE_CACHED, sha(x))
    first += req(12, w.MODE_KEEP | w.MODE_ZLIB, sha(y) + zlib.compress(y))
    first += req(13, w.MODE_CACHED, sha(y))
    first += req(14, w.MODE_KEEP, sha(z) + z, chunk=100)[:1]
    first += chunk(14, w.MODE_KEEP, 32 + N, 200, z[:4])  # GAP: the board has 100
    first += chunk(14, 0, 32 + N, 0, z[:4])  # the request changed its mode: BAD_PAYLOAD
    first += chunk(14, w.MODE_KEEP, 33 + N, 0, b"")  # ... its total: BAD_SIZE
    first += req(15, w.MODE_KEEP, b"short")  # shorter than the hash: TOO_BIG
    first += req(16, 0x08, b"x")  # a mode nobody announced: UNSUPPORTED, detail = the modes taken
    first += req(17, w.MODE_ZLIB, bytes(5000))[:1]  # a stream bigger than max_input: TOO_BIG
    first += req(18, w.MODE_ZLIB, zlib.compress(bytes(5000)))  # inflates past max_input: TOO_BIG
    first += req(19, 0, z)  # mode 0 as before
    first += chunk(20, w.MODE_CACHED, 32, 8, sha(z)[8:])  # not the current request: STALE
    second = [*load_model(N)] + req(21, w.MODE_CACHED, sha(x)) + req(22, w.MODE_CACHED, sha(x))
    second += req(23, w.MODE_CACHED, sha(y)) + req(24, w.MODE_KEEP, sha(x) + x) + req(25, w.MODE_CACHED, sha(x))
    return first, second


def frame_list(requests: list[tuple[int, dict[str, Any]]], seq0: int) -> list[bytes]:
    return [w.encode_frame(t, 0, seq0 + i, w.encode_payload(t, f)) for i, (t, f) in enumerate(requests)]


def python_session(cache_dir: Path, frames: list[bytes], cache: bool = True, inflate: bool = True) -> list[tuple]:
    volume = k210cache.SampleCache(k210cache.Volume(str(cache_dir)), 64 * 1024) if cache else None
    _, port = in_process_board(ArithBackend(), max_frame=256, max_input=4096, max_model=1 << 20, cache=volume,
                               inflate=zlib.decompress if inflate else None)
    for frame in frames:
        port.write(frame)
    return comparable(port.read(1 << 22))


def c_session(exe: Path, args: list[str], frames: list[bytes]) -> list[tuple]:
    done = subprocess.run([str(exe), "--stdio", "--max-frame", "256", "--max-input", "4096", "--max-model",
                           str(1 << 20), *args], input=b"".join(frames), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return comparable(done.stdout)


def codes(replies: list[tuple]) -> set[int]:
    return {fields["code"] for kind, _, _, fields in replies if kind == "ERROR"}


def test_c_and_python_runners_answer_mode_requests_alike(runner_exe: Path, tmp_path: Path) -> None:
    first, second = parity_script()
    region, cache_dir = tmp_path / "c.bin", tmp_path / "py"
    c_args = ["--cache-file", str(region), "--cache-bytes", str(64 * 1024)]
    frames = frame_list(first, 1)
    python, c = python_session(cache_dir, frames), c_session(runner_exe, c_args, frames)
    assert len(python) == len(c)
    for p, q in zip(python, c):
        assert p == q
    assert codes(python) >= {w.E_BAD_PAYLOAD, w.E_BAD_SIZE, w.E_NOT_CACHED, w.E_HASH_MISMATCH, w.E_TOO_BIG,
                             w.E_UNSUPPORTED, w.E_STALE, w.E_GAP}
    assert sum(1 for kind, *_ in python if kind == "RESULT") >= 7

    # Damage x's entry in both caches (a flipped tensor byte), then a second boot of each board.
    from k210.host.virtualboard.storage import damage_file

    damage_file(cache_dir / k210cache.entry_name(sha(sample(1, N))))
    data = bytearray(region.read_bytes())
    entry = next(e for e in entries(bytes(data)) if e["sha"] == sha(sample(1, N)))
    data[entry["at"] + HEAD_LEN + N // 2] ^= 0x5A
    region.write_bytes(bytes(data))
    frames = frame_list(second, 500)
    python, c = python_session(cache_dir, frames), c_session(runner_exe, c_args, frames)
    assert python == c
    errors = [(f["req"], f["code"], f["detail"]) for kind, _, _, f in python if kind == "ERROR"]
    assert errors == [(21, w.E_NOT_CACHED, 1), (22, w.E_NOT_CACHED, 0)]  # damaged and dropped, then missing


def test_runners_without_storage_or_inflate_refuse_the_modes_alike(runner_exe: Path, tmp_path: Path) -> None:
    x = sample(1, N)
    requests = [*load_model(N)] + infer(1, w.MODE_ZLIB, zlib.compress(x), CHUNK) + infer(2, w.MODE_CACHED, sha(x))
    requests += infer(3, w.MODE_KEEP, sha(x) + x, CHUNK) + infer(4, 0, x, CHUNK)
    frames = frame_list(requests, 1)
    python = python_session(tmp_path, frames, cache=False, inflate=False)
    assert python == c_session(runner_exe, ["--no-inflate"], frames)
    errors = {(f["req"], f["code"], f["detail"]) for kind, _, _, f in python if kind == "ERROR"}
    assert errors == {(1, w.E_UNSUPPORTED, 0), (2, w.E_UNSUPPORTED, 0), (3, w.E_UNSUPPORTED, 0)}
    assert {f["req"] for kind, _, _, f in python if kind == "RESULT"} == {4}
    # With inflate but no cache: ZLIB is served, the cache modes are refused naming ZLIB as what it takes.
    python = python_session(tmp_path, frames, cache=False)
    assert python == c_session(runner_exe, [], frames)
    errors = {(f["req"], f["code"], f["detail"]) for kind, _, _, f in python if kind == "ERROR"}
    assert errors == {(2, w.E_UNSUPPORTED, w.MODE_ZLIB), (3, w.E_UNSUPPORTED, w.MODE_ZLIB)}
    assert {f["req"] for kind, _, _, f in python if kind == "RESULT"} == {1, 4}


def test_hello_caps_follow_the_options(runner_exe: Path, tmp_path: Path) -> None:
    def caps(*args: str) -> int:
        done = subprocess.run([str(runner_exe), "--stdio", *args], input=w.encode_frame(w.HELLO_REQ, 0, 1, b""),
                              capture_output=True, timeout=30)
        (_, _, _, _, payload), *_ = [f for f in w.decode_frames(done.stdout) if f[3] == 1]
        return w.decode_message(w.HELLO, payload).get("caps", 0)

    assert caps("--no-inflate") == 0  # byte-identical to a runner before caps
    assert caps() == w.CAP_INFLATE
    region = str(tmp_path / "r.bin")
    for size in (64 * 1024, 1 << 20):
        got = caps("--cache-file", region + str(size), "--cache-bytes", str(size), "--no-inflate")
        log2 = got >> w.CAP_CACHE_LOG2_SHIFT
        assert got & 0xFF == w.CAP_CACHE
        # At most the region less the sector kept free, and at least half of what a power of two allows.
        assert (1 << log2) <= size - 4096 < (4 << log2)


def test_random_cuts_damage_and_wrapping_never_serve_wrong_bytes(runner_exe: Path, tmp_path: Path) -> None:
    """Many boots of a 4-sector region (it wraps every few entries) with power cuts at random points and
    bytes flipped at random between boots: every CACHED answer is the right sample's result or NOT_CACHED,
    and the last entry a clean boot kept is found by the next one."""
    import random

    rng = random.Random(15)
    region = tmp_path / "small.bin"
    xs = [sample(i) for i in range(12)]
    last_kept = None
    for boot in range(40):
        picks = [rng.randrange(len(xs)) for _ in range(6)]
        requests = load_model()
        if last_kept is not None:
            requests += cached(900, xs[last_kept])
        for k, i in enumerate(picks):
            requests += (keep if k % 2 else cached)(100 * k + i + 1, xs[i])
        cut = rng.choice((0, 0, rng.randrange(1, 3 * (HEAD_LEN + INPUT_LEN))))
        code, last = session(runner_exe, region, *requests, cut_after=cut, region_bytes=16384)
        assert code == 0 or (cut and code == CUT_EXIT), boot
        if last_kept is not None:
            expect_result(last.pop(900), xs[last_kept])  # a clean boot's newest entry outlives the reboot
        for req, (mtype, fields) in last.items():
            if mtype == w.RESULT:
                expect_result((mtype, fields), xs[req % 100 - 1])
            else:
                assert fields["code"] == w.E_NOT_CACHED, fields
        kept_here = [i for k, i in enumerate(picks) if k % 2 and 100 * k + i + 1 in last]
        last_kept = kept_here[-1] if kept_here and code == 0 else None
        if rng.random() < 0.3:  # a byte gone bad somewhere in the region
            data = bytearray(region.read_bytes())
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            region.write_bytes(bytes(data))
            last_kept = None
