"""The C runner as RISC-V code: core + the K210 glue (firmware/c/k210/main.c, the same source as the K210
build) + a QEMU `virt` board-support layer, linked into a bare-metal rv64imafc ELF and booted once per
module in qemu-system-riscv64. It stands behind `k210 hil --board-cmd`, as any board does."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial
from boardfakes.arith_model import arith_outputs, make_arith_kmodel
from boardfakes.links import C_DIR, REPO, build_c, require_tool

from k210.firmware import k210wire as w
from k210.host.hil.handlers import board_command, c_runner
from k210.host.hil.model import KModel
from k210.host.hil.ports import open_port
from k210.host.hil.session import BoardSession

IMAGES = 200
INPUT_LEN = 784
LAUNCHER = C_DIR / "qemu" / "qemu_board.py"


def elf() -> Path:
    require_tool("riscv64-unknown-elf-gcc")
    require_tool("qemu-system-riscv64")
    return build_c("qemu") / "qemu" / "k210_runner_qemu.elf"


def symbol(path: Path, name: str) -> int:
    out = subprocess.run([require_tool("riscv64-unknown-elf-nm"), str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise KeyError(name)


@pytest.fixture(scope="module")
def qemu(tmp_path_factory: pytest.TempPathFactory):
    """One QEMU boot for the module: (handler, elf path, monitor socket path)."""
    image = elf()
    monitor = tmp_path_factory.mktemp("qemu") / "monitor.sock"
    handler = board_command(f"{sys.executable} {LAUNCHER} --elf {image} --monitor {monitor}")
    handler.start()
    yield handler, image, monitor
    handler.stop()


def arith_kmodel() -> KModel:
    data = make_arith_kmodel(version=5, input_len=INPUT_LEN)
    return KModel("arith.kmodel", data, hashlib.sha256(data).hexdigest(), 5, ((w.DT_UINT8, (INPUT_LEN,)),),
                  ((w.DT_UINT8, (INPUT_LEN,)), (w.DT_FLOAT32, (1,))))


def stream_images(url: str, images: list[bytes]) -> tuple[dict[int, list], BoardSession]:
    session = BoardSession(open_port(url, 1_500_000), connect_timeout=10)
    session.connect()
    assert session.ensure_model(arith_kmodel(), upload=True) == "upload"
    todo = iter(range(len(images)))
    got: dict[int, list] = {}
    session.stream(lambda: next(todo, None), lambda back: None, images.__getitem__,
                   lambda i, outputs, us: got.__setitem__(i, [(o.dtype, o.shape, o.data) for o in outputs]))
    return got, session


def test_hil_streams_200_images_through_risc_v_code_as_the_host_build_computes(qemu) -> None:
    handler, _, _ = qemu
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, INPUT_LEN, dtype=np.uint8).tobytes() for _ in range(IMAGES)]
    on_qemu, session = stream_images(handler.url, images)
    try:
        # A HELLO sent while QEMU still boots can arrive cut (the BSP clears the FIFO): that drop happened
        # before the stream, so count only what the stream itself lost (nothing, with 20 in flight).
        dropped_at_connect = session.hello.rx_dropped
        hello = session.connect()
    finally:
        session.port.close()  # QEMU's socket takes one client: a failure here must not lock out the next test
    assert (hello.firmware, hello.backend) == ("k210-deploy-c", "c-sdk-kpu")
    assert session.stats.max_in_flight >= 3 and hello.rx_dropped == dropped_at_connect

    host = c_runner(build_c("host") / "k210_runner_host")
    try:
        on_host, host_session = stream_images(host.start(), images)
        host_session.port.close()
    finally:
        host.stop()
    assert sorted(on_qemu) == list(range(IMAGES)) and on_qemu == on_host
    out0, total = arith_outputs(images[0], 3, 7)
    assert on_qemu[0][0][2] == out0 and np.frombuffer(on_qemu[0][1][2], "<f4")[0] == total


def exchange(url: str, data: bytes, done=lambda replies: False, wait: float = 10.0) -> list[tuple]:
    """Send `data`; collect the board's frames until `done(replies)` or `wait` seconds (a loaded machine
    makes QEMU slow: wait for what is expected rather than a fixed time)."""
    port = serial.serial_for_url(url, 1_500_000, timeout=0.05)
    try:
        port.reset_input_buffer()
        port.write(data)
        deadline, got, replies = time.monotonic() + wait, b"", []
        while time.monotonic() < deadline and not done(replies):
            got += port.read(65536)
            replies = [(w.TYPE_NAMES.get(t, t), flags, seq, w.decode_message(t, p)) for _, t, flags, seq, p in
                       w.decode_frames(got)]
        return replies
    finally:
        port.close()


def test_damaged_vectors_and_garbage_then_the_next_good_frame_is_answered(qemu) -> None:
    handler, _, _ = qemu
    vectors = json.loads((REPO / "firmware" / "protocol" / "vectors.json").read_text())
    rng = random.Random(5)
    stream = b"".join(bytes.fromhex(case["stream_hex"]) + b"\x00" for case in vectors["receiver"])
    stream += bytes(rng.randrange(256) for _ in range(20000)) + b"\x00"
    exchange(handler.url, stream, wait=2.0)  # bytes past the 16 KiB RX ring may be dropped, as on a board
    replies = exchange(handler.url, w.encode_frame(w.HELLO_REQ, 0, 4242, b""),
                       lambda got: any(seq == 4242 for _, _, seq, _ in got))
    assert replies and replies[-1][0] == "HELLO" and replies[-1][2] == 4242
    assert replies[-1][3]["rx_dropped"] > 0  # it saw the damage, dropped it, and kept serving


def test_hello_offers_inflate_and_a_ram_cache_and_modes_give_the_plain_result(qemu) -> None:
    """PROTOCOL.md 4.1 on RISC-V: core/inflate.c and core/samplestore.c behind the K210 glue, the cache's
    flash region a RAM stand-in (qemu/bsp.c)."""
    import zlib

    handler, _, _ = qemu
    model = make_arith_kmodel(version=5, input_len=INPUT_LEN)
    x = bytes((i * 13 + 5) & 0xFF for i in range(INPUT_LEN))
    sha = hashlib.sha256(x).digest()
    requests = [(w.HELLO_REQ, {}),
                (w.LOAD_BEGIN, {"size": len(model), "sha256": hashlib.sha256(model).hexdigest(), "inputs": [],
                                "outputs": []}),
                (w.LOAD_CHUNK, {"offset": 0, "data": model}), (w.LOAD_COMMIT, {})]
    for req, mode, stream in ((1, 0, x), (2, w.MODE_ZLIB, zlib.compress(x)), (3, w.MODE_KEEP, sha + x),
                              (4, w.MODE_CACHED, sha)):
        requests.append((w.INFER_CHUNK, {"req": req, "total": len(stream), "offset": 0, "mode": mode,
                                         "data": stream}))
    data = b"".join(w.encode_frame(t, 0, 7000 + i, w.encode_payload(t, f)) for i, (t, f) in enumerate(requests))
    replies = exchange(handler.url, data, lambda got: sum(r[0] == "RESULT" for r in got) >= 4)
    hello = next(f for kind, _, seq, f in replies if kind == "HELLO" and seq == 7000)
    assert hello["caps"] & w.CAP_INFLATE and hello["caps"] & w.CAP_CACHE
    assert 1 << (hello["caps"] >> w.CAP_CACHE_LOG2_SHIFT) <= 256 * 1024  # the 256 KiB stand-in (Makefile)
    results = {f["req"]: w.parse_result_blob(f["data"], f["n_outputs"]) for kind, _, _, f in replies
               if kind == "RESULT"}
    assert [kind for kind, *_ in replies if kind == "ERROR"] == [] and sorted(results) == [1, 2, 3, 4]
    assert results[1][0][2] == arith_outputs(x, 3, 7)[0]
    assert results[2] == results[3] == results[4] == results[1]


def test_sizes_and_painted_stack_high_water_mark(qemu) -> None:
    handler, image, monitor = qemu
    size = subprocess.run([require_tool("riscv64-unknown-elf-size"), "-A", str(image)], capture_output=True,
                          text=True, check=True).stdout
    sections = {p[0]: int(p[1]) for p in (line.split() for line in size.splitlines()) if len(p) == 3
                and p[1].isdigit()}
    text = sum(v for k, v in sections.items() if k.startswith((".text", ".init", ".rodata")))
    bss = sections.get(".bss", 0) + sections.get(".tbss", 0)
    low, top = symbol(image, "__heap_end"), symbol(image, "__stack")
    dump = Path(str(monitor) + ".stack")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(monitor))
        sock.settimeout(5)
        sock.recv(4096)  # banner and prompt
        sock.sendall(f"pmemsave {low:#x} {top - low} \"{dump}\"\n".encode())
        sock.recv(4096)
        deadline = time.monotonic() + 5
        while not (dump.exists() and dump.stat().st_size == top - low) and time.monotonic() < deadline:
            time.sleep(0.05)
    stack = dump.read_bytes()
    painted = len(stack) - len(stack.lstrip(b"\xa5"))
    used = len(stack) - painted
    print(f"\nQEMU RISC-V build: .text+.rodata {text} B, .data {sections.get('.data', 0)} B, .bss {bss} B; "
          f"stack {top - low} B, high-water {used} B")
    assert top - low == 16384 and 256 < used < (top - low) // 2  # after the streaming tests (a reboot repaints it)
    assert bss < 6 * 1024 * 1024  # the K210's 6 MiB of general SRAM


def test_reboot_resets_the_machine_and_it_boots_again(qemu) -> None:
    handler, _, _ = qemu
    before = exchange(handler.url, w.encode_frame(w.HELLO_REQ, 0, 1, b""), lambda got: len(got) >= 1)[-1][3]
    got = exchange(handler.url, w.encode_frame(w.REBOOT, 0, 2, b""), lambda got: len(got) >= 2)
    assert [g[0] for g in got] == ["ACK", "HELLO"] and got[1][1] == w.FLAG_EVENT
    assert got[1][3]["nonce"] != before["nonce"] and got[1][3]["rx_frames"] == 0
