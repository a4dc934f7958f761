# mp_session: boots firmware/maixpy/main.py on the mp_stubs hardware and feeds it one host byte stream,
# in real MicroPython or in CPython alike. The program that runs is: a prelude written by
# tests/boardfakes/micropython.py (SESSION, PROFILE, CONFIG, FLASH, SOURCES, CHUNK, REAL_FS, SEED, CUT,
# DAMAGE, LIST_DIR, CARD_BYTES, BOARD_HEAP, SESSION_END), then mp_stubs.py, then this file. It prints each
# UART write as hex (a `W` line), the files in LIST_DIR at every boot and at the end (`FS` lines),
# and the GC heap figures (BALLAST: what main.py finds used at boot, and the ballast block).
# main.py, k210runner.py, k210wire.py and k210cache.py run from their unmodified source text: exec'd as
# modules, as a board's import would. Where the interpreter has no file system (the 1.10 build; CPython
# has no /sd) `open` and k210cache's `uos` are mp_stubs' RamDisk; 1.27 writes its own (VfsPosix) files.
# The card's hardware faults: CUT = (path prefix, n) cuts the power in the nth write to such files;
# DAMAGE = {boot: [paths]} flips a bit in those files before that boot.
# No f-strings or syntax MicroPython 1.10 lacks.

# ruff: noqa: F821, UP031 - the names come from the prelude and mp_stubs.py, concatenated before this file
import gc
import sys

try:
    import ubinascii as binascii
except ImportError:
    import binascii


class Link:
    """The UART's far end: hands out SESSION in CHUNK-byte reads, collects what the board writes."""

    def __init__(self, data, chunk, end=0):
        self.data = data
        self.end = end or len(data)  # bytes past `end` only pad SESSION (same heap as a longer session)
        self.at = 0
        self.chunk = chunk
        self.reads = 0
        self.low = heap_free()

    def read(self, n):
        free = heap_free()
        if free is not None and (self.low is None or free < self.low):
            self.low = free
        if self.at >= self.end:
            return None
        self.reads += 1
        if self.reads % 7 == 0:
            return b""  # now and then nothing came in yet, as a UART read with timeout returns
        n = min(n, self.chunk, self.end - self.at)
        piece = self.data[self.at:self.at + n]
        self.at += len(piece)
        return piece

    def write(self, data):
        # Printed at once, not kept: what the board sends must not pile up in the heap being measured.
        print("W " + binascii.hexlify(data).decode())


def heap_free():
    mem_free = getattr(gc, "mem_free", None)
    return mem_free() if mem_free is not None else None


def real_fs_open():
    import os

    for d in ("/sd", "/flash"):
        try:
            os.mkdir(d)
        except OSError:
            pass
    return open, os


def ram_fs_open():
    disk = RamDisk(CARD_BYTES)
    return disk.open, disk.uos()


def damage(fs_open, path):
    """Flip one bit in the middle of a file: a card gone bad while the board was off."""
    with fs_open(path, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0x10
    with fs_open(path, "wb") as f:
        f.write(data)


def board_heap_ballast():
    """BOARD_HEAP: leave main.py the heap a firmware with a GC heap of BOARD_HEAP bytes would: what this
    harness holds that a board does not (the host's byte stream, the source texts a board compiles from
    files, the card's pool) was given on top of BOARD_HEAP; the rest is taken by a ballast block."""
    if not BOARD_HEAP:
        return None
    gc.collect()
    harness = len(SESSION) + CARD_BYTES
    for name in SOURCES:
        harness += len(SOURCES[name])
    board_used = gc.mem_alloc() - harness
    extra = gc.mem_free() - (BOARD_HEAP - board_used)
    print("BALLAST %d %d" % (board_used, extra))
    if extra < 0:
        raise MemoryError("interpreter heap too small for BOARD_HEAP %d by %d" % (BOARD_HEAP, -extra))
    # In 512-byte pieces: first fit puts them into the holes the harness's own objects left low in the
    # heap, so that main.py finds one run of free heap, as on a board (not the harness's fragments).
    piece = 512
    pieces = [None] * (extra // (piece + 16) + 1)
    for i in range(len(pieces) - 1):
        pieces[i] = bytearray(piece)
    return pieces


def listing(fs_os, path):
    """'name:size' of every file in `path`, sorted (the order a directory lists in is the file system's)."""
    try:
        names = fs_os.listdir(path)
    except OSError:
        return "-"
    return " ".join(sorted(["%s:%d" % (n, fs_os.stat(path + "/" + n)[6]) for n in names])) or "empty"


def load_module(name, fs_open):
    g = {"__name__": name}
    if fs_open is not None:
        g["open"] = fs_open
    exec(SOURCES[name], g)
    mod = Namespace()
    for k in g:
        setattr(mod, k, g[k])
    sys.modules[name] = mod
    return mod


def run():
    fs_open, fs_os = real_fs_open() if REAL_FS else ram_fs_open()
    inject = None if REAL_FS else fs_open
    if not REAL_FS:
        sys.modules["uos"] = fs_os  # k210cache's file system calls (CPython's os has no /sd)
    power = Power(CUT[0], CUT[1]) if CUT else Power("", 0)
    link = Link(SESSION, CHUNK, SESSION_END)
    gc.collect()
    before = heap_free()
    install(sys.modules, PROFILE, link, fs_open, FLASH, SEED)
    sys.modules["k210_config"] = module(CONFIG=CONFIG)
    load_module("k210wire", inject)
    load_module("k210runner", inject)
    load_module("k210cache", power.open(fs_open))
    ballast = board_heap_ballast()
    boots = 0
    while True:
        boots += 1
        for path in DAMAGE.get(boots, ()):
            damage(fs_open, path)
        if LIST_DIR:
            print("FS %d %s" % (boots, listing(fs_os, LIST_DIR)))
        g = {"__name__": "__main__"}
        if inject is not None:
            g["open"] = inject
        try:
            exec(SOURCES["main"], g)
        except Reboot:
            continue
        except LinkClosed:
            break
    g = None
    del ballast  # kept until here: main.py's heap is the board's for the whole session
    gc.collect()
    after = heap_free()
    print("BOOTS %d" % boots)
    if LIST_DIR:
        print("FS end %s" % listing(fs_os, LIST_DIR))
    print("HEAP %s %s %s" % (before, link.low, after))
    print("END")


run()
