"""Issue 15's sample cache (firmware/maixpy/k210cache.py) and zlib inputs in real MicroPython: npm's
WebAssembly builds 1.10 (its own uzlib, uhashlib, ubinascii; no file system, so the card is mp_stubs'
RamDisk) and 1.27 (its own zlib over `deflate`, and its own os/VfsPosix files), under node. One scripted
session takes every INFER mode through its checks; every reply must equal CPython's byte for byte,
the power cut's reboot and the damaged card included."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.micropython import Card, node_missing, run_session
from test_micropython_real import Script, replies, upload

from k210.firmware import k210wire as w

INPUT_LEN = 64
MODEL = make_arith_kmodel(version=5, mul=3, add=7, input_len=INPUT_LEN, pad=40)
MODEL_IO = ([(w.DT_UINT8, (1, 8, 8, 1))], [(w.DT_UINT8, (INPUT_LEN,))])
CACHE_DIR = "/sd/k210cache"
ENTRY = 40 + INPUT_LEN  # PROTOCOL.md 4.1: "K2C1", u32 size, SHA-256, the tensor
CAPACITY = 3 * ENTRY + 20  # room for three samples: the fourth evicts the oldest
CONFIG = {"sample_cache_dir": CACHE_DIR, "sample_cache_bytes": CAPACITY, "inflate": True}


@pytest.fixture(scope="module", autouse=True)
def interpreters() -> None:
    why = node_missing()
    if why:
        pytest.fail(why)


def sample(i: int) -> bytes:
    return bytes((i * 37 + k // 4) & 0xFF for k in range(INPUT_LEN))  # runs of 4: zlib shrinks it


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def entry_path(data: bytes) -> str:
    return f"{CACHE_DIR}/{sha(data)[:8].hex()}.smp"  # PROTOCOL.md 4.1: the first 16 hex digits


class Session(Script):
    """A Script that writes INFER requests in any mode, each with its own req, two chunks when it can."""

    def __init__(self) -> None:
        super().__init__()
        self.req = 0
        self.expect: list[tuple | None] = []  # what each request should get: ("RESULT", x) or ("ERROR", code, detail)

    def infer(self, mode: int, stream: bytes, expect: tuple | None) -> None:
        self.req += 1
        half = len(stream) // 2 if len(stream) > 40 else 0
        for offset, data in ((0, stream[:half]), (half, stream[half:])) if half else ((0, stream),):
            self.send(w.INFER_CHUNK, {"req": self.req, "total": len(stream), "offset": offset, "mode": mode,
                                      "data": data})
        self.expect.append(expect)

    def reboot_and_reload(self) -> None:
        self.raw(bytes(64))  # what was in the UART at the reset is lost (here only delimiters)
        upload(self, MODEL, *MODEL_IO)  # an uploaded model is gone after a reset; the samples are not


INTERPRETERS = ("cpython", "mp-1.27", "mp-1.10")


def run_all(stream: bytes, config: dict, card: Card | None = None, ram_fs: bool = False) -> dict:
    return {name: run_session(name, stream, profile="canmv-kpu", config=config, card=card, ram_fs=ram_fs)
            for name in INTERPRETERS}


def check_answers(out: bytes, expect: list[tuple | None]) -> None:
    """The last RESULT or ERROR of each request is the expected one: a RESULT the model's output for
    that sample, an ERROR its (code, detail); no answer where the power went (None)."""
    answers = {m["req"]: m for kind, _, m in replies(out) if kind in ("RESULT", "ERROR") and m["req"]}
    assert sorted(answers) == [req for req, want in enumerate(expect, 1) if want is not None]
    for req, want in enumerate(expect, 1):
        if want is None:
            continue
        answer = answers[req]
        if want[0] == "RESULT":
            (_, _, data), = w.parse_result_blob(answer["data"], answer["n_outputs"])
            assert data == arith_outputs(want[1], 3, 7)[0], (req, answer)
        else:
            assert (answer.get("code"), answer.get("detail")) == want[1:], (req, answer)


def scripted() -> tuple[bytes, list[tuple], Card]:
    s = Session()
    x = [sample(i) for i in range(9)]
    s.send(w.HELLO_REQ)
    upload(s, MODEL, *MODEL_IO)
    s.infer(0, x[0], ("RESULT", x[0]))
    s.infer(w.MODE_ZLIB, zlib.compress(x[0]), ("RESULT", x[0]))
    s.infer(w.MODE_ZLIB | w.MODE_KEEP, sha(x[1]) + zlib.compress(x[1], 9), ("RESULT", x[1]))
    s.infer(w.MODE_KEEP, sha(x[2]) + x[2], ("RESULT", x[2]))
    s.infer(w.MODE_CACHED, sha(x[1]), ("RESULT", x[1]))  # hits
    s.infer(w.MODE_CACHED, sha(x[2]), ("RESULT", x[2]))
    s.infer(w.MODE_CACHED, sha(x[7]), ("ERROR", w.E_NOT_CACHED, 0))  # never kept
    s.infer(w.MODE_KEEP, sha(x[4]) + x[3], ("ERROR", w.E_HASH_MISMATCH, 0))  # nothing runs, nothing kept
    s.infer(w.MODE_CACHED, sha(x[4]), ("ERROR", w.E_NOT_CACHED, 0))
    stream = zlib.compress(x[3])
    s.infer(w.MODE_ZLIB, stream[:-4] + bytes(4), ("ERROR", w.E_BAD_PAYLOAD, 0))  # Adler-32 wrong
    s.infer(w.MODE_ZLIB, stream[:len(stream) // 2], ("ERROR", w.E_BAD_PAYLOAD, 0))  # cut short
    s.infer(w.MODE_ZLIB, x[3], ("ERROR", w.E_BAD_PAYLOAD, 0))  # not zlib at all
    s.infer(w.MODE_ZLIB, zlib.compress(x[3][:-1]), ("ERROR", w.E_BAD_SIZE, INPUT_LEN))  # one byte short
    s.infer(w.MODE_CACHED, sha(x[3]) + b"!", ("ERROR", w.E_BAD_SIZE, w.SHA_LEN))
    s.infer(0x08, x[3], ("ERROR", w.E_UNSUPPORTED, w.MODE_ZLIB | w.MODE_KEEP | w.MODE_CACHED))
    s.infer(w.MODE_KEEP, sha(x[3]) + x[3], ("RESULT", x[3]))  # the cache is full: x1, x2, x3
    s.infer(w.MODE_ZLIB | w.MODE_KEEP, sha(x[4]) + zlib.compress(x[4]), ("RESULT", x[4]))  # evicts x1
    s.infer(w.MODE_CACHED, sha(x[1]), ("ERROR", w.E_NOT_CACHED, 0))
    s.infer(w.MODE_CACHED, sha(x[4]), ("RESULT", x[4]))
    s.send(w.REBOOT)  # boot 2: x2's entry went bad on the card while the board was off
    s.reboot_and_reload()
    s.infer(w.MODE_CACHED, sha(x[2]), ("ERROR", w.E_NOT_CACHED, 1))  # damaged: dropped
    s.infer(w.MODE_CACHED, sha(x[2]), ("ERROR", w.E_NOT_CACHED, 0))  # and gone
    s.infer(w.MODE_CACHED, sha(x[3]), ("RESULT", x[3]))  # the others outlive the reboot
    s.infer(w.MODE_KEEP, sha(x[5]) + x[5], None)  # the power goes while x5 is written: boot 3
    s.reboot_and_reload()
    s.infer(w.MODE_CACHED, sha(x[5]), ("ERROR", w.E_NOT_CACHED, 0))  # the half-written file was no entry
    s.infer(w.MODE_KEEP, sha(x[8]) + x[8], ("RESULT", x[8]))  # x3, x4, x8 (x5 is not sent again: its
    s.infer(w.MODE_CACHED, sha(x[8]), ("RESULT", x[8]))  # .tmp file must go at the boot, not by a rewrite)
    s.infer(w.MODE_KEEP, sha(x[6]) + x[6], ("RESULT", x[6]))  # evicts the oldest the card lists: x3
    s.infer(w.MODE_CACHED, sha(x[3]), ("ERROR", w.E_NOT_CACHED, 0))
    s.infer(w.MODE_CACHED, sha(x[4]), ("RESULT", x[4]))
    card = Card(cut=(entry_path(x[5])[:-len(".smp")], 1), damage={2: [entry_path(x[2])]}, list_dir=CACHE_DIR)
    return bytes(s.data), s.expect, card


@pytest.fixture(scope="module")
def sessions() -> dict:
    stream, expect, card = scripted()
    return {"expect": expect, **run_all(stream, CONFIG, card)}


@pytest.mark.parametrize("interpreter", ["mp-1.27", "mp-1.10"])
def test_cache_session_replies_equal_cpython_byte_for_byte(sessions: dict, interpreter: str) -> None:
    run, ref = sessions[interpreter], sessions["cpython"]
    assert run.out == ref.out
    assert run.boots == ref.boots == 3
    assert run.files == ref.files


def test_cache_session_is_served_as_the_protocol_says(sessions: dict) -> None:
    got = replies(sessions["cpython"].out)
    hellos = [(flags, m) for kind, flags, m in got if kind == "HELLO"]
    assert len(hellos) == 4  # boot, the request, two reboots
    caps = w.CAP_INFLATE | w.CAP_CACHE | ((CAPACITY.bit_length() - 1) << w.CAP_CACHE_LOG2_SHIFT)
    assert {m["caps"] for _, m in hellos} == {caps}
    check_answers(sessions["cpython"].out, sessions["expect"])
    assert not [m for kind, _, m in got if kind == "ERROR" and not m["req"]]  # the uploads went through


def test_the_card_holds_what_the_cache_says(sessions: dict) -> None:
    files = sessions["cpython"].files
    x = [sample(i) for i in range(9)]

    def names(*indexes: int) -> set[str]:
        return {entry_path(x[i]).rsplit("/", 1)[1] + f":{ENTRY}" for i in indexes}

    assert set(files["2"].split()) == names(2, 3, 4)  # before boot 2: x1 evicted
    cut = entry_path(x[5]).rsplit("/", 1)[1].replace(".smp", ".tmp")
    assert set(files["3"].split()) == names(3, 4) | {f"{cut}:20"}  # half of the first write, no rename
    assert set(files["end"].split()) == names(4, 8, 6)  # the .tmp removed at boot 3, x3 evicted


def test_heap_with_the_cache_in_play(sessions: dict) -> None:
    old = sessions["mp-1.10"]
    assert old.heap_before is not None and old.heap_low is not None and old.heap_after is not None
    assert old.heap_low < old.heap_before
    print(f"\nMicroPython 1.10, 2 MiB heap, cache session: free heap {old.heap_before} before, "
          f"{old.heap_low} lowest, {old.heap_after} after; 1.27: {sessions['mp-1.27'].heap_before} before, "
          f"{sessions['mp-1.27'].heap_low} lowest, {sessions['mp-1.27'].heap_after} after")


def test_a_cache_on_flash_works_with_spiffs_flat_names() -> None:
    """MaixPy's /flash is SPIFFS: no directories (mkdir raises NotImplementedError) and a listing of any
    path gives every file of the flash as "dir/name". The cache must boot, keep, find its entries again
    after a reset, clean its .tmp file and evict, as on the card: the same replies from all three."""
    flash_dir = "/flash/k210cache"
    x = [sample(i) for i in range(6)]

    def path(data: bytes) -> str:
        return f"{flash_dir}/{sha(data)[:8].hex()}"

    s = Session()
    s.send(w.HELLO_REQ)
    upload(s, MODEL, *MODEL_IO)
    s.infer(w.MODE_KEEP, sha(x[1]) + x[1], ("RESULT", x[1]))
    s.infer(w.MODE_ZLIB | w.MODE_KEEP, sha(x[2]) + zlib.compress(x[2]), ("RESULT", x[2]))
    s.infer(w.MODE_KEEP, sha(x[3]) + x[3], None)  # the power goes while x3 is written
    s.reboot_and_reload()
    s.infer(w.MODE_CACHED, sha(x[1]), ("RESULT", x[1]))  # found again after the reset
    s.infer(w.MODE_CACHED, sha(x[3]), ("ERROR", w.E_NOT_CACHED, 0))
    s.infer(w.MODE_KEEP, sha(x[4]) + x[4], ("RESULT", x[4]))
    s.infer(w.MODE_KEEP, sha(x[5]) + x[5], ("RESULT", x[5]))  # evicts x1
    s.infer(w.MODE_CACHED, sha(x[1]), ("ERROR", w.E_NOT_CACHED, 0))
    s.infer(w.MODE_CACHED, sha(x[2]), ("RESULT", x[2]))
    card = Card(cut=(path(x[3]), 1), list_dir="/flash")
    config = dict(CONFIG, sample_cache_dir=flash_dir)
    runs = run_all(bytes(s.data), config, card, ram_fs=True)
    for name in ("mp-1.27", "mp-1.10"):
        assert runs[name].out == runs["cpython"].out and runs[name].files == runs["cpython"].files, name
    got = replies(runs["cpython"].out)
    assert [m["caps"] & w.CAP_CACHE for kind, _, m in got if kind == "HELLO"] == [w.CAP_CACHE] * 3
    check_answers(runs["cpython"].out, s.expect)
    cut = path(x[3])[len("/flash/"):] + ".tmp:20"
    assert cut in runs["cpython"].files["2"].split()
    kept = sorted(f"{path(x[i])[len('/flash/'):]}.smp:{ENTRY}" for i in (2, 4, 5))  # no .tmp
    assert sorted(n for n in runs["cpython"].files["end"].split() if "k210cache/" in n) == kept


@pytest.mark.parametrize("inflate", [True, False])
def test_a_board_without_a_card_announces_no_cache_and_refuses_its_modes(inflate: bool) -> None:
    """No card in the slot (the cache's directory cannot be made or listed): HELLO has no CACHE bit, KEEP
    and CACHED get UNSUPPORTED with the modes the board takes; without zlib either, HELLO is the one of a
    runner from before caps."""
    s = Session()
    s.send(w.HELLO_REQ)
    upload(s, MODEL, *MODEL_IO)
    modes = w.MODE_ZLIB if inflate else 0
    s.infer(w.MODE_CACHED, sha(sample(1)), ("ERROR", w.E_UNSUPPORTED, modes))
    s.infer(w.MODE_KEEP, sha(sample(1)) + sample(1), ("ERROR", w.E_UNSUPPORTED, modes))
    s.infer(w.MODE_ZLIB, zlib.compress(sample(1)), ("RESULT", sample(1)) if inflate else
            ("ERROR", w.E_UNSUPPORTED, modes))
    config = dict(CONFIG, sample_cache_dir="/nocard/k210cache", inflate=inflate)
    runs = run_all(bytes(s.data), config)
    for name in ("mp-1.27", "mp-1.10"):
        assert runs[name].out == runs["cpython"].out, name
    got = replies(runs["cpython"].out)
    assert [m.get("caps", 0) for kind, _, m in got if kind == "HELLO"] == [w.CAP_INFLATE if inflate else 0] * 2
    check_answers(runs["cpython"].out, s.expect)
