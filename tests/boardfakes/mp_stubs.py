# mp_stubs: the K210 hardware modules firmware/maixpy/main.py imports, written so that the same file
# runs in real MicroPython (1.10 .. 1.27, under node) and in CPython. Only hardware is stubbed:
#   machine        UART fed from / draining into a byte stream (the `link`), reset() -> Reboot; as
#                  MaixPy-v1 standard_lib/machine/machine_uart.c (CanMV: the same file): readinto is
#                  mp_stream_readinto, waiting timeout_char (10 ms), None when nothing came in
#   not stubbed    uhashlib (moduhashlib_maixpy.c: sha256 with update/digest), ubinascii.crc32 and
#                  uzlib (MicroPython extmod, built into both firmwares): the interpreter's own run
#   fpioa_manager  fm.register, fm.fpioa.UART1_TX/RX
#   utime          a deterministic clock (every read advances it 1000 us), so replies match byte for byte
#   urandom        a deterministic getrandbits
#   KPU            MaixPy-v1 (sipeed/MaixPy-v1 components/micropython/port/src/Maix/Maix_kpu.c):
#                  load/set_outputs/forward/get_output/deinit; set_outputs prints and returns False on a
#                  shape mismatch (py_kpu_class_set_outputs); fmaps are array.array ('f' or 'B': buffer
#                  protocol, and subscripts yield floats for 'f' maps, ints for 'B', as py_fmap_subscr)
#                  without typecode(), broken on the board
#   maix.KPU       CanMV main (kendryte/canmv main, port/src/Maix/maix_kpu/Maix_kpu.c): a class,
#                  load_kmodel / run_with_output(path, getlist=True) (kmodel v3/v4): m_malloc's the file's
#                  size on the GC heap on every call, the previous buffer held until then
#                  (km->inputs_addr); output 0's buffer as byte count // 4 floats.
#                  CanMV feat/kpu (branch feat/kpu, port/src/Maix/modMaix.c mod_maix_new_kpu and
#                  maix_kpu/maix_kpu.c): a zero-argument function returning an object with load(path |
#                  offset, size=), run(image), get_outputs(index) (that output's buffer as byte count // 4
#                  floats), deinit() (v3/v4/v5); no `KPU` module
#   image          Image(path of a grayscale PGM) holds the pixels, pix_to_ai() copies them into pix_ai
#                  and returns None (feat/kpu omv/py/py_image.c py_image_pix_to_ai, grayscale case)
#   heap sizes     tests/boardfakes/micropython.py FIRMWARE_HEAP (each firmware's CONFIG_MAIXPY_GC_HEAP_SIZE)
#   the SD card    RamDisk: open() and a `uos` (mkdir, listdir, stat, remove, rename) over files kept in a
#   and /flash     dict, for an interpreter without a file system (MicroPython 1.10's build, and CPython,
#                  which has no /sd): FatFs on /sd, SPIFFS on /flash, as MaixPy-v1 mounts them;
#                  Power: the card loses power halfway through a write
# The KPUs run the arithmetic fake kmodel (tests/boardfakes/arith_model.py, the C runner's host backend):
# output 0 uint8 [n] = (x * mul + add) mod 256, output 1 float32 [1] = sum of the input bytes.
# No f-strings, annotations or other syntax MicroPython 1.10 lacks.
# ruff: noqa: UP031, B904

import array

try:
    import ustruct as struct
except ImportError:
    import struct


class Reboot(BaseException):
    """machine.reset(): the session restarts main.py, as a board boots into it again."""


class LinkClosed(BaseException):
    """The host's byte stream ran out: the session is over."""


class Namespace:
    pass


def module(**attrs):
    ns = Namespace()
    for k in attrs:
        setattr(ns, k, attrs[k])
    return ns


def parse_arith(data):
    """(version, mul, add, input_len) of an arithmetic fake kmodel; ValueError otherwise."""
    if len(data) < 20 or bytes(data[8:12]) != b"ARTH":
        raise ValueError("not an arithmetic fake kmodel")
    if bytes(data[0:4]) == b"LDMK":
        version = struct.unpack_from("<I", data, 4)[0]
    else:
        version = struct.unpack_from("<I", data, 0)[0]
    return version, data[12], data[13], struct.unpack_from("<I", data, 16)[0]


def arith(x, n, mul, add):
    out = bytearray(n)
    total = 0
    for i in range(n):
        b = x[i]
        out[i] = (b * mul + add) & 0xFF
        total += b
    return out, total


def read_model(fs_open, flash, source, size=0):
    if isinstance(source, int):
        data = flash[source]
        return data[:size] if size else data
    with fs_open(source, "rb") as f:
        return f.read()


def make_machine(link):
    class UART:
        UART1 = 1
        UART2 = 2
        UART3 = 3

        def __init__(self, uart_id, baud, bits=8, parity=None, stop=1, timeout=0, read_buf_len=256, **kw):
            if uart_id != 1 or bits != 8 or parity is not None or stop != 1:
                raise ValueError("UART settings the runner never uses")
            self.read_buf_len = read_buf_len

        def readinto(self, buf):
            data = link.read(len(buf))
            if data is None:
                raise LinkClosed()
            if not data:
                return None
            buf[:len(data)] = data
            return len(data)

        def write(self, buf):
            link.write(bytes(buf))
            return len(buf)

    def reset():
        raise Reboot()

    return module(UART=UART, reset=reset)


def make_fpioa_manager():
    fpioa = module(UART1_TX=65, UART1_RX=64)
    registered = {}

    def register(pin, function):
        registered[pin] = function

    return module(fm=module(fpioa=fpioa, register=register, registered=registered))


def make_utime():
    clock = [0]

    def ticks_us():
        clock[0] += 1000
        return clock[0] & 0x3FFFFFFF

    def ticks_diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    return module(ticks_us=ticks_us, ticks_ms=lambda: ticks_us() // 1000, ticks_diff=ticks_diff,
                  sleep_ms=lambda ms: None)


def make_urandom(seed):
    state = [seed & 0xFFFFFFFF]

    def getrandbits(bits):
        state[0] = (state[0] * 1103515245 + 12345) & 0xFFFFFFFF
        return state[0] >> (32 - bits) if bits < 32 else state[0]

    return module(getrandbits=getrandbits)


def make_maixpy_kpu(fs_open, flash):
    """Sipeed MaixPy-v1's `KPU` module (Maix_kpu.c): kmodel v3/v4 only."""

    class Task:
        def __init__(self, model):
            self.version, self.mul, self.add, self.input_len = parse_arith(model)
            self.outputs_set = {}
            self.results = []

    def load(source):
        if isinstance(source, str) and ".kmodel" not in source:
            raise ValueError("[MAIXPY]kpu: model format don't match, only supply .kmodel ")
        model = read_model(fs_open, flash, source)
        version = parse_arith(model)[0]
        if version not in (3, 4):
            raise ValueError("[MAIXPY]kpu: load error:2002, ERR_KMODEL_VERSION: only support kmodel V3/V4 now")
        return Task(model)

    def set_outputs(task, index, w, h, ch):
        # py_kpu_class_set_outputs: sipeed_kpu_set_outputs_shape's IDX_OUTRANGE / SIZE_NOTMATCH are printed,
        # and the call returns False; only True marks the output as set.
        counts = (task.input_len, 1)  # the arithmetic model's outputs: uint8 [n], float32 [1]
        if index >= len(counts):
            print("[MAIXPY]kpu: set_outputs arg value error:kmodel output idx %d out of range" % index)
            return False
        if w * h * ch != counts[index]:
            print("[MAIXPY]kpu: set_outputs arg value error: w,c,ch size not match output size")
            return False
        task.outputs_set[index] = True
        return True

    def forward(task, data):
        if not isinstance(data, list) or not data:
            raise ValueError("input not support")
        if task.version == 4 and 0 not in task.outputs_set:
            raise OSError("ERR_OUTPUTS_SET: need kpu.set_outputs() to set shape")
        x = bytearray(task.input_len)
        for i in range(min(len(data), task.input_len)):
            x[i] = int(data[i]) & 0xFF
        out0, total = arith(x, task.input_len, task.mul, task.add)
        # A v3 model hands back its uint8 output as it is; v4 dequantizes every output to float32.
        first = array.array("B", out0) if task.version == 3 else array.array("f", list(out0))
        task.results = [first, array.array("f", [float(total)])]
        return task.results[0]

    def get_output(task, index):
        if task.version == 4 and index not in task.outputs_set:
            raise OSError("get_outputs_shape err")
        return task.results[index]

    def deinit(task):
        task.results = []
        return True

    return module(load=load, set_outputs=set_outputs, forward=forward, get_output=get_output, deinit=deinit)


def floats_of(buf):
    """A KPU output buffer as the firmwares hand it back: byte count // 4 float32 values."""
    count = len(buf) // 4
    return list(struct.unpack("<%df" % count, bytes(buf[:4 * count])))


def arith_buffers(x, model):
    """The arithmetic model's output buffers: uint8 [n], float32 [1]."""
    _, mul, add, n = model
    out0, total = arith(x, n, mul, add)
    return [out0, struct.pack("<f", float(total))]


def file_size(fs_open, path):
    """The firmware's get_file_size (f_size), counted in small reads: no copy of the file on the heap."""
    size = 0
    with fs_open(path, "rb") as f:
        while True:
            piece = f.read(512)
            if not piece:
                return size
            size += len(piece)


def make_canmv_v1(fs_open, flash):
    """CanMV main `maix.KPU` (Maix_kpu.c): a class; load_kmodel(path) / load_kmodel(offset, size);
    run_with_output(path, getlist=True): m_malloc(f_size) on the GC heap, load_file_from_ff into it, the
    pointer kept in the object (km->inputs_addr) until the next call's m_malloc has returned; then output
    0 only (kpu_get_output(ctx, 0)) as byte count // 4 floats; None without getlist. nncase 0.x runtime
    (MODEL_VERSION 4): v3/v4 load, anything else fails with 'Failed to init model'."""

    class KPU:
        def __init__(self):
            self.model = None
            self.inputs_addr = None

        def load_kmodel(self, path=None, size=0):
            if path is None:
                raise ValueError("invalid path input")
            if isinstance(path, int) and size <= 0:
                raise ValueError("size error!")
            try:
                model = parse_arith(read_model(fs_open, flash, path, size))
            except ValueError:
                raise OSError("Failed to init model")
            if model[0] not in (3, 4):
                raise OSError("Failed to init model")
            self.model = model

        def run_with_output(self, input=None, getlist=False, get_feature=False):
            if input is None:
                raise ValueError("invalid input")
            if not isinstance(input, str):
                raise ValueError("invalid input")
            if self.model is None:
                raise OSError("Please load kmodel before")
            buf = bytearray(file_size(fs_open, input))  # m_malloc(f_size): the old buffer still referenced
            with fs_open(input, "rb") as f:
                f.readinto(buf)
            self.inputs_addr = buf
            out0 = arith_buffers(buf, self.model)[0]
            return floats_of(out0) if getlist else None

        def deinit(self):
            if self.model is None:
                return False
            self.model = None
            return True

    return module(KPU=KPU)


class Image:
    """OpenMV-style image as CanMV's image module loads a grayscale PGM (P5): the pixels in one GC-heap
    buffer of w*h bytes read straight from the file; pix_to_ai() copies them into pix_ai (xalloc(w*h),
    omv/py/py_image.c py_image_pix_to_ai, grayscale case) and returns None."""

    def __init__(self, path, fs_open):
        with fs_open(path, "rb") as f:
            fields = []
            field = b""
            while len(fields) < 4:  # the header, a byte at a time: no copy of the file on the heap
                c = f.read(1)
                if not c:
                    raise OSError("image: PGM header cut short")
                if c in (b" ", b"\t", b"\n", b"\r"):
                    if field:
                        fields.append(field)
                        field = b""
                else:
                    field += c
            if fields[0] != b"P5" or fields[3] != b"255":
                raise OSError("image: only 8-bit grayscale PGM here")
            self.w, self.h = int(fields[1]), int(fields[2])
            self.pixels = bytearray(self.w * self.h)
            if f.readinto(self.pixels) != self.w * self.h:
                raise OSError("image: PGM shorter than its size")
        self.pix_ai = None

    def pix_to_ai(self):
        if self.pix_ai is None:
            self.pix_ai = bytearray(self.w * self.h)
        self.pix_ai[:] = self.pixels


def make_image(fs_open):
    return module(Image=lambda path: Image(path, fs_open))


def make_canmv_feat_kpu(fs_open, flash):
    """CanMV feat/kpu `maix.KPU`: modMaix.c registers KPU as MP_DEFINE_CONST_FUN_OBJ_0(mod_maix_new_kpu):
    each call makes one object (maix_kpu.c k210_kpu_make_new). Its methods (k210_kpu_locals_dict_table):
    load(path | offset, *, size=0), run(image) (needs pix_ai, image w/h = the model's), get_outputs(index=0)
    (kpu_get_output(ctx, index), byte count // 4 floats; OSError for an index the model lacks), deinit().
    nncase 1.x runtime: kmodel v3/v4/v5."""

    class K210KPU:
        def __init__(self):
            self.model = None
            self.ran = False
            self.outs = []

        def load(self, source, size=0):
            if isinstance(source, int):
                if source <= 0:
                    raise ValueError("Model offset error!")
            elif not isinstance(source, str):
                raise ValueError("Load_kmodel need one parameter, path(string) or offset(int)")
            data = read_model(fs_open, flash, source, size)
            try:
                model = parse_arith(data)
            except ValueError:
                raise OSError("Failed to load model")
            if model[0] not in (3, 4, 5):
                raise OSError("Failed to load model")
            self.model = model
            self.ran = False

        def run(self, img):
            if self.model is None:
                raise OSError("Please load kmodel before")
            if not isinstance(img, Image):
                raise TypeError("can't convert to image")
            if img.pix_ai is None:
                raise ValueError("Image formart error, use pix_to_ai() method to convert for kpu")
            self.outs = arith_buffers(img.pix_ai, self.model)
            self.ran = True

        def get_outputs(self, index=0):
            if self.model is None or not self.ran:
                raise OSError("Please load/run kmodel before")
            if not 0 <= index < len(self.outs):
                raise OSError("Failed to get kpu outputs")
            return floats_of(self.outs[index])

        def deinit(self):
            self.model = None
            self.ran = False
            self.outs = []

    def KPU():  # noqa: N802 - the firmware's name for its factory function
        return K210KPU()

    return module(KPU=KPU)


class RamFile:
    def __init__(self, disk, path, mode):
        self.disk = disk
        self.path = path
        self.text = "b" not in mode
        self.writing = "w" in mode or "a" in mode
        if self.writing:
            if "a" not in mode or path not in disk.files:
                disk.create(path)
        elif path not in disk.files:
            raise OSError(ENOENT)
        self.pos = 0

    def read(self, n=-1):
        data = self.disk.files[self.path]
        end = len(data) if n is None or n < 0 else min(len(data), self.pos + n)
        piece = bytes(body_piece(data, self.pos, end))
        self.pos = end
        return piece.decode() if self.text else piece

    def readinto(self, buf):
        data = self.disk.files[self.path]
        n = min(len(buf), len(data) - self.pos)
        buf[:n] = body_piece(data, self.pos, self.pos + n)
        self.pos += n
        return n

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.disk.files[self.path].extend(data)
        return len(data)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


ENOENT = 2
EEXIST = 17
ENOSPC = 28


def body_piece(body, a, b):
    """Bytes a..b of a file's body (a bytearray, or a PoolBody without a copy)."""
    if isinstance(body, PoolBody):
        return body.piece(a, b)
    return body[a:b]


class Card:
    """The card's bytes, allocated once before the board boots, so that what the files hold is not
    taken from the GC heap the runner measures (a board's SD card is not in its heap). Files take
    regions from the top; a file rewritten or grown while it is the newest reuses its region."""

    def __init__(self, size):
        self.pool = bytearray(size)
        self.view = memoryview(self.pool)
        self.top = 0


class PoolBody:
    def __init__(self, card):
        self.card = card
        self.start = card.top
        self.n = 0

    def __len__(self):
        return self.n

    def piece(self, a, b):
        return self.card.view[self.start + a:self.start + b]

    def extend(self, data):
        card = self.card
        if self.start + self.n != card.top:  # not the newest region: move to the top
            at = card.top
            if at + self.n > len(card.pool):
                raise OSError(ENOSPC)
            card.view[at:at + self.n] = card.view[self.start:self.start + self.n]
            self.start = at
            card.top = at + self.n
        end = card.top + len(data)
        if end > len(card.pool):
            raise OSError(ENOSPC)
        card.view[card.top:end] = data
        self.n += len(data)
        card.top = end

    def release(self):
        if self.start + self.n == self.card.top:
            self.card.top = self.start


class RamDisk:
    """/sd and /flash as files in a dict, with the semantics of MaixPy-v1's file systems (CanMV's are the
    same code): /sd is FatFs (directories; rename onto an existing name fails with EEXIST), /flash is
    SPIFFS, which has no directories (vfs_spiffs.c: mkdir raises NotImplementedError; a file
    "/flash/d/x" is the object "/d/x"; listing any path lists every object, its leading '/' cut off).
    Listings come in creation order (a rename moves the name to the end), as a fresh FatFs card and
    emscripten's file system list them: MicroPython's dict has no order of its own."""

    def __init__(self, card_bytes=0):
        self.files = {}  # path -> bytearray, or PoolBody on a Card of card_bytes
        self.card = Card(card_bytes) if card_bytes else None
        self.dirs = ["/sd", "/flash"]
        self.order = []  # file paths, oldest first

    def create(self, path):
        self._parent(path)
        if path not in self.files:
            self.order.append(path)
        elif self.card is not None:
            self.files[path].release()
        self.files[path] = bytearray() if self.card is None else PoolBody(self.card)

    def _parent(self, path):
        parent = path[:path.rfind("/")]
        if parent not in self.dirs and not path.startswith("/flash/"):
            raise OSError(ENOENT)

    def open(self, path, mode="r"):
        return RamFile(self, path, mode)

    def mkdir(self, path):
        if path.startswith("/flash/"):
            raise NotImplementedError("SPIFFS not support")
        if path in self.dirs or path in self.files:
            raise OSError(EEXIST)
        self._parent(path)
        self.dirs.append(path)

    def listdir(self, path):
        if path == "/flash" or path.startswith("/flash/"):
            return [p[len("/flash/"):] for p in self.order if p.startswith("/flash/")]
        if path not in self.dirs:
            raise OSError(ENOENT)
        names = []
        for p in self.order + self.dirs:
            if p[:p.rfind("/")] == path:
                names.append(p[p.rfind("/") + 1:])
        return names

    def stat(self, path):
        if path in self.dirs:
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if path not in self.files:
            raise OSError(ENOENT)
        return (0x8000, 0, 0, 0, 0, 0, len(self.files[path]), 0, 0, 0)

    def remove(self, path):
        if path not in self.files:
            raise OSError(ENOENT)
        if self.card is not None:
            self.files[path].release()
        del self.files[path]
        self.order.remove(path)

    def rename(self, old, new):
        if old not in self.files:
            raise OSError(ENOENT)
        self._parent(new)
        if new in self.files:
            if not new.startswith("/flash/"):
                raise OSError(EEXIST)  # FatFs's f_rename: FR_EXIST
            self.remove(new)  # vfs_spiffs.c removes the old file and renames again
        data = self.files[old]
        self.remove(old)
        self.order.append(new)
        self.files[new] = data

    def uos(self):
        return module(mkdir=self.mkdir, listdir=self.listdir, stat=self.stat, remove=self.remove,
                      rename=self.rename)


class CutFile:
    """A file being written when the power goes: half of the write reaches the card, then the board
    is off (Reboot), so the file is never closed or renamed."""

    def __init__(self, f, power):
        self.f = f
        self.power = power

    def write(self, data):
        if self.power.cut_now():
            self.f.write(bytes(data[:len(data) // 2]))
            raise Reboot()
        return self.f.write(data)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Power:
    """Counts writes to files whose path starts with `prefix`; the `cut_at`th one loses power (0: never)."""

    def __init__(self, prefix, cut_at):
        self.prefix = prefix
        self.cut_at = cut_at
        self.writes = 0

    def cut_now(self):
        self.writes += 1
        return self.writes == self.cut_at

    def open(self, fs_open):
        def open_(path, mode="r"):
            f = fs_open(path, mode)
            if self.cut_at and ("w" in mode or "a" in mode) and path.startswith(self.prefix):
                return CutFile(f, self)
            return f

        return open_


def install(modules, profile, link, fs_open, flash, seed=1):
    """Put the stand-ins for `profile` ('maixpy-v1', 'canmv', 'canmv-kpu') into `modules` (sys.modules)."""
    for name in ("KPU", "maix", "image"):
        if name in modules:
            del modules[name]
    modules["machine"] = make_machine(link)
    modules["fpioa_manager"] = make_fpioa_manager()
    modules["utime"] = make_utime()
    modules["urandom"] = make_urandom(seed)
    if profile == "maixpy-v1":
        modules["KPU"] = make_maixpy_kpu(fs_open, flash)
    elif profile == "canmv":
        modules["maix"] = make_canmv_v1(fs_open, flash)
    elif profile == "canmv-kpu":
        modules["maix"] = make_canmv_feat_kpu(fs_open, flash)
        modules["image"] = make_image(fs_open)
    else:
        raise ValueError("unknown profile " + profile)
