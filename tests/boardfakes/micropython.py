"""Run firmware/maixpy/*.py unmodified in real MicroPython (npm's WebAssembly builds under node) or in
CPython, on the mp_stubs hardware, for one host byte stream; return what the board sent.

Interpreters:
    "cpython"   this Python, in a subprocess (the reference the others must match byte for byte)
    "mp-1.10"   npm `micropython` 1.1.8: MicroPython 1.10 (emscripten), a fixed GC heap of `heap` bytes;
                one release older than the 1.11 core MaixPy-v1 and CanMV pin; no file system, no `uos`
                (and no VFS to mount): files and k210cache's `uos` are mp_stubs' RamDisk, as in CPython
    "mp-1.27"   npm `@micropython/micropython-webassembly-pyscript` 1.27 (its GC heap grows on demand);
                its own `os` (VfsPosix over emscripten's in-memory file system; no VfsFat or VfsLfs2)
scripts/bootstrap.sh installs both packages into .cache/npm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BOARD_DIR = REPO / "firmware" / "maixpy"
NPM_DIR = Path(os.environ.get("K210_NPM_DIR", REPO / ".cache" / "npm" / "node_modules"))
DRIVER = HERE / "mp_node.js"
INTERPRETERS = ("cpython", "mp-1.10", "mp-1.27")
# Each firmware's GC heap, CONFIG_MAIXPY_GC_HEAP_SIZE in its project config_defaults.mk (main.py's heap
# figures follow gc.mem_free() on whatever runs it):
#   MaixPy-v1:      sipeed/MaixPy-v1 projects/maixpy_*/config_defaults.mk          0x80000
#   CanMV main:     kendryte/canmv (main) projects/canmv_dnk210/config_defaults.mk  0xBB9B0
#   CanMV feat/kpu: kendryte/canmv (feat/kpu) projects/canmv_dock/config_defaults.mk 0xBB9B0
FIRMWARE_HEAP = {"maixpy-v1": 0x80000, "canmv": 0xBB9B0, "canmv-kpu": 0xBB9B0}


@dataclass
class Session:
    out: bytes  # every byte the board wrote to its UART
    boots: int  # main.py runs: 1 + the reboots the session caused
    heap_before: int | None  # gc.mem_free() with only the stubs loaded
    heap_low: int | None  # the least free heap seen at a UART read during the session
    heap_after: int | None  # after the session, everything collected
    stdout: str
    files: dict[str, str]  # boot number ("1", "2", ...; "end") -> "name:size ..." of list_dir's files


def node_missing() -> str | None:
    """Why the MicroPython interpreters cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/bootstrap.sh installs nodejs)"
    for package in ("micropython/lib/micropython.js", "@micropython/micropython-webassembly-pyscript/micropython.mjs"):
        if not (NPM_DIR / package).exists():
            return f"{NPM_DIR / package} is missing (scripts/bootstrap.sh installs it with npm)"
    return None


@dataclass
class Card:
    """The SD card's faults in a session: `cut` = (path prefix, n): the power goes halfway through the nth
    write to files whose path starts so; `damage` = {boot: [paths]}: a bit of each flips before that boot.
    `list_dir`: the directory whose files the session reports at every boot and at its end."""

    cut: tuple[str, int] | None = None
    damage: dict[int, list[str]] | None = None
    list_dir: str = ""


def program(session: bytes, profile: str, config: dict, flash: dict[int, bytes], *, chunk: int, real_fs: bool,
            seed: int = 1, card: Card | None = None, card_bytes: int = 0, board_heap: int = 0,
            session_end: int = 0) -> str:
    card = card or Card()
    sources = {name: (BOARD_DIR / f"{name}.py").read_text() for name in ("k210wire", "k210runner", "k210cache",
                                                                       "main")}
    prelude = "\n".join([
        f"SESSION = {bytes(session)!r}",
        f"PROFILE = {profile!r}",
        f"CONFIG = {config!r}",
        f"FLASH = {dict(flash)!r}",
        f"SOURCES = {sources!r}",
        f"CHUNK = {chunk}",
        f"REAL_FS = {real_fs}",
        f"SEED = {seed}",
        f"CUT = {card.cut!r}",
        f"DAMAGE = {dict(card.damage or {})!r}",
        f"LIST_DIR = {card.list_dir!r}",
        f"CARD_BYTES = {card_bytes}",
        f"BOARD_HEAP = {board_heap}",
        f"SESSION_END = {session_end:<12d}",  # one width: a probe's program text is as long as the run's
    ])
    return "\n".join([prelude, (HERE / "mp_stubs.py").read_text(), (HERE / "mp_session.py").read_text()])


def run_session(interpreter: str, session: bytes, *, profile: str = "canmv-kpu", config: dict | None = None,
                flash: dict[int, bytes] | None = None, chunk: int = 61, heap: int = 2 << 20,
                timeout: float = 240.0, card: Card | None = None, ram_fs: bool = False,
                board_heap: int = 0, card_bytes: int = 0, stop_after: int = 0) -> Session:
    """Boot main.py under `interpreter`, feed it `session`, return what it sent. ram_fs: 1.27 too gets
    mp_stubs' RamDisk (FatFs /sd, SPIFFS /flash, as MaixPy mounts them) instead of its own files.
    board_heap (1.10): main.py gets the free heap of a firmware whose GC heap is that big; the
    interpreter's heap is made larger by what the harness holds (the stream, the sources, a card of
    card_bytes allocated before boot, so that files are not taken from the board's heap). stop_after:
    the board reads only that many bytes of the session (the same program text, so the same heap to the
    byte as the whole session's)."""
    cfg = {"upload_path": "/sd/k210_upload.kmodel", "input_path": "/sd/k210_input.bin",
           "image_path": "/sd/k210_input.pgm", "boot_counter_path": "/flash/k210_boots",
           "max_frame": 256, "max_input": 4096, "max_model": 1 << 16, "read_buf_len": 4096}
    cfg.update(config or {})
    # Only 1.27 has a file system of its own; CPython has no /sd: it gets the RAM one, as 1.10 does.
    real_fs = interpreter == "mp-1.27" and not ram_fs
    end = stop_after or len(session)
    text = program(session, profile, cfg, flash or {}, chunk=chunk, real_fs=real_fs, card=card, card_bytes=card_bytes,
                   board_heap=board_heap, session_end=end)
    if board_heap:
        heap = max(heap, board_heap + card_bytes + 2 * len(text) + (64 << 10))
    with tempfile.TemporaryDirectory(prefix="k210-mp-") as tmp:
        prog = Path(tmp) / "session.py"
        prog.write_text(text)
        if interpreter == "cpython":
            argv = [sys.executable, str(prog)]
        elif interpreter in ("mp-1.10", "mp-1.27"):
            argv = ["node", str(DRIVER), str(NPM_DIR), interpreter, str(heap), str(prog)]
        else:
            raise ValueError(f"unknown interpreter {interpreter!r}")
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, cwd=tmp)
    stdout = result.stdout.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    out = bytearray()
    files: dict[str, str] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "W":
            out += bytes.fromhex(value)
        elif key == "FS":
            boot, _, names = value.partition(" ")
            files[boot] = names
        elif key in ("HEAP", "BOOTS"):
            fields[key] = value
    if "HEAP" not in fields or "END" not in stdout.splitlines():
        raise RuntimeError(f"{interpreter} session did not finish (exit {result.returncode}):\n"
                           f"{stdout[-3000:]}\n{result.stderr.decode('utf-8', 'replace')[-2000:]}")
    heap_figures = [None if v == "None" else int(v) for v in fields["HEAP"].split()]
    return Session(bytes(out), int(fields["BOOTS"]), *heap_figures, stdout, files)
