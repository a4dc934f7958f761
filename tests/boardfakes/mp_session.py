# mp_session: boots firmware/maixpy/main.py on the mp_stubs hardware and feeds it one host byte stream,
# in real MicroPython or in CPython alike. The program that runs is: a prelude written by
# tests/boardfakes/micropython.py (SESSION, PROFILE, CONFIG, FLASH, SOURCES, CHUNK, REAL_FS, SEED),
# then mp_stubs.py, then this file. It prints each UART write as hex (a `W` line), and the GC heap figures.
# main.py, k210runner.py and k210wire.py run from their unmodified source text: exec'd as modules, as
# a board's import would; where the interpreter has no file system (the 1.10 build) `open` is a RAM one.
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

    def __init__(self, data, chunk):
        self.data = data
        self.at = 0
        self.chunk = chunk
        self.reads = 0
        self.low = heap_free()

    def read(self, n):
        free = heap_free()
        if free is not None and (self.low is None or free < self.low):
            self.low = free
        if self.at >= len(self.data):
            return None
        self.reads += 1
        if self.reads % 7 == 0:
            return b""  # now and then nothing came in yet, as a UART read with timeout returns
        n = min(n, self.chunk)
        piece = self.data[self.at:self.at + n]
        self.at += len(piece)
        return piece

    def write(self, data):
        # Printed at once, not kept: what the board sends must not pile up in the heap being measured.
        print("W " + binascii.hexlify(data).decode())


def heap_free():
    mem_free = getattr(gc, "mem_free", None)
    return mem_free() if mem_free is not None else None


class RamFile:
    def __init__(self, files, path, mode):
        self.files = files
        self.path = path
        self.text = "b" not in mode
        self.writing = "w" in mode or "a" in mode
        if self.writing:
            if "a" not in mode or path not in files:
                files[path] = bytearray()
        elif path not in files:
            raise OSError(2)
        self.pos = 0

    def read(self, n=-1):
        data = self.files[self.path]
        end = len(data) if n is None or n < 0 else min(len(data), self.pos + n)
        piece = bytes(data[self.pos:end])
        self.pos = end
        return piece.decode() if self.text else piece

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.files[self.path].extend(data)
        return len(data)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ram_open(files):
    def open_(path, mode="r"):
        if not (path.startswith("/sd/") or path.startswith("/flash/")):
            raise OSError(2)
        return RamFile(files, path, mode)

    return open_


def real_fs_open():
    import os

    for d in ("/sd", "/flash"):
        try:
            os.mkdir(d)
        except OSError:
            pass
    return open


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
    fs_open = real_fs_open() if REAL_FS else ram_open({})
    inject = None if REAL_FS else fs_open
    link = Link(SESSION, CHUNK)
    gc.collect()
    before = heap_free()
    install(sys.modules, PROFILE, link, fs_open, FLASH, SEED)
    sys.modules["k210_config"] = module(CONFIG=CONFIG)
    load_module("k210wire", inject)
    load_module("k210runner", inject)
    boots = 0
    while True:
        boots += 1
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
    gc.collect()
    after = heap_free()
    print("BOOTS %d" % boots)
    print("HEAP %s %s %s" % (before, link.low, after))
    print("END")


run()
