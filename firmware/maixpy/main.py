# main.py: the k210-deploy runner for MaixPy-v1 and CanMV boards (protocol: firmware/PROTOCOL.md).
#
# Copy main.py, k210wire.py, k210runner.py and k210cache.py (and k210_config.py) to the SD card's root: with a card in,
# MaixPy and CanMV boot /sd/main.py (without one, /flash/main.py). On boot it opens UART1 on the pins in
# CONFIG, loads the configured model (if any), sends an unsolicited HELLO and serves requests forever.
#
# MicroPython modules and functions this file uses (tests/boardfakes/mp_stubs.py stands in for exactly
# these, so the files run unmodified in real MicroPython and in CPython):
#   machine:        UART(UART.UART1, baud, 8, None, 1, timeout=, read_buf_len=), UART.UART1,
#                   uart.readinto(buf) / uart.read(n), uart.write(buf), reset()
#   fpioa_manager:  fm.register(pin, fm.fpioa.UART1_TX / UART1_RX)
#   KPU (MaixPy-v1, Maix/Maix_kpu.c): load(path | flash_offset), set_outputs(task, i, w, h, ch) -> bool
#                         (False and a printed line on a shape mismatch, no exception),
#                         forward(task, list_of_floats) -> fmap, get_output(task, i), deinit(task);
#                         fmap: bytes(fmap) (buffer protocol), fmap[:1] (fmap.typecode() is broken)
#   maix.KPU (CanMV main, Maix/maix_kpu/Maix_kpu.c): a class: KPU(), load_kmodel(path) /
#                         load_kmodel(flash_offset, size), run_with_output(path_to_raw_input, getlist=True)
#                         -> output 0 as [float] (its byte count // 4), deinit()
#   maix.KPU (CanMV feat/kpu, Maix/modMaix.c + maix_kpu/maix_kpu.c): a zero-argument function that
#                         mallocs a KPU object: load(path | flash_offset, size=), run(image),
#                         get_outputs(index) -> [float] (output `index`'s buffer read as byte count // 4
#                         float32 values), deinit(); image.Image(path), img.pix_to_ai()
#   utime:          ticks_us(), ticks_diff(a, b)
#   uhashlib:       sha256() with update()/digest()   (also used by k210runner)
#   gc:             collect(), mem_free() (optional: sizes MaixPy-v1's float inputs)
#   urandom:        getrandbits(32)   (optional)
#   uzlib / zlib:   decompress(buf) -> bytes or bytearray (optional: ZLIB inputs; MicroPython 1.2x has zlib)
#   uos (k210cache): mkdir, listdir, stat(path)[6], remove, rename; files: readinto, write
#   k210_config:    CONFIG dict overriding the defaults below (optional module)
# plus k210wire / k210runner / k210cache (this folder) and built-in open() for the upload, input and cache files.
# ruff: noqa: UP031

import gc

import utime

try:
    import ustruct as struct
except ImportError:
    import struct

try:
    import uhashlib as hashlib
except ImportError:
    import hashlib

try:
    import k210runner
    import k210wire as w
except ImportError:  # CPython with the package installed (the virtual board)
    from k210.firmware import k210runner
    from k210.firmware import k210wire as w

FIRMWARE = "k210-deploy-maixpy"
FW_VERSION = "1.0"

CONFIG = {
    "baud": 1500000,
    "tx_pin": 10,  # board pin wired to the USB-serial adapter's RX
    "rx_pin": 11,  # ... and to its TX
    "read_buf_len": 4096,  # UART RX ring: bytes the board holds while it is busy (HELLO rx_window)
    "max_frame": 1024,  # largest frame; keep well below read_buf_len
    "max_input": 262144,  # largest input tensor, bytes; each firmware cuts it to what its GC heap serves
    "max_output": 4096,  # CanMV: bytes of outputs (lists of boxed floats) max_input leaves heap for
    "stream_input": None,  # CanMV main: inputs straight to input_path (None: when RAM buffers would not fit)
    "heap_reserve": 24576,  # GC heap bytes kept free for frames, outputs and the interpreter
    "max_model": 3 * 1024 * 1024,
    "model": None,  # boot model: "/sd/model.kmodel" or a flash offset such as 0x300000
    "model_size": 0,  # bytes; CanMV needs it to load from a flash offset
    "model_version": 0,  # kmodel version of a flash-offset model: required (a file's is read from the file)
    "model_inputs": [],  # [(dtype, shape)], nncase dtype codes (k210wire.DT_*), e.g. [(4, (1, 28, 28, 1))]
    "model_outputs": [],
    "upload_path": "/sd/k210_upload.kmodel",  # MaixPy-v1's KPU.load wants a name ending in .kmodel
    "input_path": "/sd/k210_input.bin",  # CanMV v1.0.x: run_with_output reads raw input from a file
    "image_path": "/sd/k210_input.pgm",  # CanMV feat/kpu: KPU.run takes an image, loaded from this file
    "canmv_kmodel_versions": None,  # None: what the detected CanMV KPU API loads (v1.0.x: 3, 4; feat/kpu: 3, 4, 5)
    "boot_counter_path": "/flash/k210_boots",  # makes the boot nonce differ on every boot; None: off
    "sample_cache_dir": "/sd/k210cache",  # test samples kept by SHA-256 (k210cache.py); None: no cache
    "sample_cache_bytes": 16 * 1024 * 1024,  # at most this much of the card; /flash: ~1 MB at most
    "inflate": True,  # take zlib-compressed inputs (uzlib), if this firmware has it
}


def describe_model_file(path):
    """(kmodel version, size, sha256) of a model file, read in small blocks (the GC heap is small)."""
    digest = hashlib.sha256()
    head = b""
    size = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(4096)
            if not block:
                break
            if not head:
                head = block[:8]
            digest.update(block)
            size += len(block)
    return w.kmodel_version(head), size, digest.digest()


def load_boot_model(runner, config):
    source = config["model"]
    if isinstance(source, str):
        version, size, sha = describe_model_file(source)
    else:
        version, size, sha = config["model_version"], config["model_size"], None
        if not version:  # MaixPy-v1 would skip set_outputs and fail every inference with get_outputs_shape err
            raise ValueError("k210_config has no model_version for the model at flash 0x%x (k210 deploy writes it)"
                             % source)
    if version not in runner.backend.kmodel_versions:
        raise ValueError(runner.backend.why_not(version))
    runner.load_boot_model(source, size, config["model_inputs"], config["model_outputs"], sha, version)


def ticks_us():
    return utime.ticks_us()


def elapsed_us(start):
    return utime.ticks_diff(utime.ticks_us(), start)


def whc(shape):
    # MaixPy-v1 set_outputs wants (w, h, ch): NHWC for 4-D outputs, else everything in ch.
    if len(shape) == 4:
        return shape[2], shape[1], shape[3]
    n = 1
    for d in shape:
        n *= d
    return 1, 1, n


def pack_floats(values, buf):
    """Pack floats into buf (grown only when a bigger output shows up); return the filled view."""
    need = 4 * len(values)
    if len(buf[0]) < need:
        buf[0] = bytearray(need)
    out = buf[0]
    for i in range(len(values)):
        struct.pack_into("<f", out, 4 * i, values[i])
    return memoryview(out)[:need]


# Floats unpacked per struct call. One value at a time would leave a garbage 1-tuple in the block below
# every boxed float: once collected, the free heap is all one-block holes between the floats, and the
# result's few-block allocations fail (a MemoryError or worse in MicroPython 1.10; the same layout on
# the K210's 64-bit MicroPython). A run of FILL_STEP floats leaves one hole per run instead.
FILL_STEP = 64
ZERO = 0.0


def fill_floats(values, data, count):
    """values[i] = the i-th little-endian float32 of data, for i < count."""
    step = "<%df" % FILL_STEP
    whole = count - count % FILL_STEP
    for at in range(0, whole, FILL_STEP):
        run = struct.unpack_from(step, data, 4 * at)
        for j in range(FILL_STEP):
            values[at + j] = run[j]
    if whole < count:
        run = struct.unpack_from("<%df" % (count - whole), data, 4 * whole)
        for j in range(count - whole):
            values[whole + j] = run[j]
    run = None


def release_floats(values):
    """Point every slot at one shared float: the boxed input floats become garbage together."""
    for i in range(len(values)):
        values[i] = ZERO


def shape_or_flat(outputs, index, count):
    if index < len(outputs):
        dtype, shape = outputs[index]
        n = 1
        for d in shape:
            n *= d
        if n == count:
            return tuple(shape)
    return (count,)


class MaixPyV1Backend:
    """Sipeed MaixPy-v1 `import KPU as kpu`: kmodel v3/v4, inputs as float lists, outputs from fmaps."""

    name = "maixpy-v1"
    kmodel_versions = (3, 4)

    def __init__(self, kpu):
        self.kpu = kpu
        self.task = None
        self.version = 0
        self.outputs = []
        self.input_dtype = w.DT_FLOAT32
        self.values = []

    def why_not(self, version):
        if version == 5:
            return ("kmodel v5 (nncase >= 1.0) cannot run on MaixPy-v1: its KPU module loads kmodel v3/v4 only; "
                    "use CanMV with the nncase-1.x KPU, or the C runner")
        return "MaixPy-v1 loads kmodel v3/v4; this file is %s" % ("kmodel v%d" % version if version else "no kmodel")

    def input_limit(self, wanted, reserve, copies=1):
        """Largest input (bytes) the GC heap holds: KPU.forward wants one boxed float per element (40 bytes
        each on the K210's 64-bit MicroPython 1.11, measured here on whatever runs this) besides the
        runner's `copies` raw buffers of that size (two with zlib inputs)."""
        free, per_float = heap_free(), float_list_cost()
        if free is None or per_float is None:
            return wanted
        fit = (free - reserve) * 4 // (4 * copies + per_float)
        return max(0, min(wanted, fit - fit % 1024))  # whole KiB: a few bytes of heap change nothing

    def load(self, source, size, version, inputs, outputs):
        self.unload()
        if version == 4 and not outputs:
            raise k210runner.RunnerError(w.E_LOAD_FAILED, "MaixPy-v1 runs a kmodel v4 only after KPU.set_outputs for "
                                         "each output: declare the output shapes (k210 deploy / LOAD_BEGIN do)")
        self.task = self.kpu.load(source)
        if version == 4:
            for i in range(len(outputs)):
                ow, oh, och = whc(outputs[i][1])
                # Maix_kpu.c py_kpu_class_set_outputs prints its complaint and returns False, it raises nothing:
                # a model loaded on a False would fail every forward with ERR_OUTPUTS_SET.
                if self.kpu.set_outputs(self.task, i, ow, oh, och) is not True:
                    self.unload()
                    raise k210runner.RunnerError(
                        w.E_LOAD_FAILED, "KPU.set_outputs(task, %d, w=%d, h=%d, ch=%d) returned False: output %d of "
                        "this kmodel v4 is not %s (index out of range or another element count)"
                        % (i, ow, oh, och, i, outputs[i][1]))
        self.version = version
        self.outputs = outputs
        self.input_dtype = inputs[0][0] if inputs else w.DT_FLOAT32
        if inputs and self.input_dtype == w.DT_FLOAT32:
            # The float list's one big block is taken now, while the heap is least fragmented.
            try:
                self._values(w.tensor_nbytes(w.DT_FLOAT32, inputs[0][1]) // 4)
            except MemoryError:
                self.unload()
                raise k210runner.RunnerError(w.E_LOAD_FAILED, "the model's float input does not fit the GC heap") \
                    from None
        if version == 4:  # fmaps of kmodel v4 hold float32 whatever the compiled output type
            return inputs, [(w.DT_FLOAT32, shape) for _, shape in outputs]
        return inputs, outputs

    def unload(self):
        self.values = []
        if self.task is not None:
            self.kpu.deinit(self.task)
            self.task = None
        gc.collect()

    def infer(self, data, n):
        if self.input_dtype == w.DT_UINT8:
            # KPU.forward copies a list into a float32 buffer: right for float-input models only.
            raise k210runner.RunnerError(w.E_INFER_FAILED, "MaixPy-v1 KPU.forward takes inputs as a float list; "
                                         "compile the model with a float32 input")
        if self.input_dtype != w.DT_FLOAT32:
            raise k210runner.RunnerError(w.E_INFER_FAILED, "input dtype %s not supported on MaixPy-v1"
                                         % w.DTYPE_NAMES.get(self.input_dtype, self.input_dtype))
        count = n // 4
        try:
            values = self._values(count)
            fill_floats(values, data, count)
            gc.collect()  # before the clock starts, so a collection never lands inside the timing
            start = ticks_us()
            fmap = self.kpu.forward(self.task, values)
            micros = elapsed_us(start)
        except MemoryError:
            self.values = []  # a half-built list must not keep the heap full for the next request
            gc.collect()
            raise k210runner.RunnerError(w.E_INFER_FAILED, "%d input floats do not fit the GC heap" % count) from None
        finally:
            # forward copied the floats (Maix_kpu.c py_kpu_forward: malloc'd float32 buffer, system heap):
            # let them go now, so the outputs and reply frames find the heap in one piece again.
            release_floats(self.values)
            gc.collect()
        records = [self._record(fmap, 0)]
        for i in range(1, len(self.outputs)):
            records.append(self._record(self.kpu.get_output(self.task, i), i))
        return micros, records

    def _values(self, count):
        if len(self.values) != count:
            self.values = []
            gc.collect()
            self.values = [0.0] * count
        return self.values

    def _record(self, fmap, index):
        raw = bytes(fmap)  # fmap exports its output buffer (float32 or uint8)
        # Not fmap.typecode(): MaixPy-v1's Maix_kpu.c builds that string from the typecode used as an
        # address. The type of an element tells float32 from uint8 instead.
        first = fmap[:1]
        dtype = w.DT_FLOAT32 if not raw or isinstance(first[0], float) else w.DT_UINT8
        count = len(raw) // w.DTYPE_SIZES[dtype]
        return dtype, shape_or_flat(self.outputs, index, count), raw


def returned_output(declared):
    """(dtype, shape) of what a CanMV KPU hands back for a declared output: its buffer read as
    byte count // 4 float32 values, re-packed here to the same bytes, so a tail of 1-3 bytes never
    comes back (a uint8 output of 10 classes returns its first 8)."""
    dtype, shape = declared
    nbytes = w.tensor_nbytes(dtype, shape)
    size = w.DTYPE_SIZES.get(dtype, 0)
    if nbytes < 0 or not size:
        return w.DT_FLOAT32, (max(0, nbytes) // 4,)
    if nbytes % 4 == 0:
        return dtype, tuple(shape)
    return dtype, ((nbytes - nbytes % 4) // size,)


def output_record(declared, raw):
    """An output read back as float32 values, in its declared dtype when the bytes are whole."""
    if declared is not None:
        dtype, shape = returned_output(declared)
        if w.tensor_nbytes(dtype, shape) == len(raw):
            return dtype, shape, raw
    return w.DT_FLOAT32, (len(raw) // 4,), raw


def list_cost(out_bytes):
    """GC heap bytes a CanMV KPU's output list of out_bytes // 4 floats takes, with its re-packed copy."""
    per_float = float_list_cost()
    return (out_bytes // 4) * (per_float or 0) + out_bytes


class _CanMVBase:
    """What both CanMV APIs share: the versions their runtime loads, output lists of floats."""

    kmodel_versions = ()
    kpu = None
    input_copies = 2  # GC-heap copies of the input the firmware itself makes (see each backend)
    max_output = 4096  # bytes of outputs HELLO's max_input leaves GC heap for (lists of boxed floats)
    streams_input = False

    def why_not(self, version):
        return "this CanMV build loads kmodel %s; this file is %s" % (
            "/".join("v%d" % v for v in self.kmodel_versions), "kmodel v%d" % version if version else "no kmodel")

    def input_limit(self, wanted, reserve, copies=1):
        """Largest input the GC heap serves: the firmware's own copies, the runner's `copies` raw buffers,
        and output lists of max_output bytes. Where the interpreter says nothing of its heap: wanted."""
        free = heap_free()
        if free is None or float_list_cost() is None:
            return wanted
        held_count = self.input_copies + SPARE_BLOCKS
        blocks = held_count + copies
        rest = reserve + list_cost(self.max_output)
        room = (free - rest) // blocks
        fit = min(wanted, room - room % 1024)  # whole KiB: a few bytes more or less of heap change nothing
        fit -= fit % 4
        # Measured, not only summed: each block must be one run of free heap. They are taken now, before
        # the runner's small objects can split the runs: the firmware's own blocks are held here (see
        # _give), the runner's `copies` buffers handed to it (runner_buffers).
        while fit > 0:
            held = take_blocks(fit + HOLD_SLACK, held_count, 0)
            spare = take_blocks(fit, copies, rest) if held is not None else None
            if spare is not None:
                self._held = held
                self.runner_buffers = spare
                break
            drop(held)
            held = None
            fit -= max(1024, fit // 64)
            fit -= fit % 1024
        self._block = max(0, fit)
        return self._block

    _held = None
    _block = 0
    runner_buffers = None

    def _give(self):
        """Free the held blocks for the firmware's own allocations of this inference."""
        if self._held is not None:
            drop(self._held)
            self._held = None
            gc.collect()

    def _take(self):
        """After an inference: hold again as many of the firmware's blocks as are free (CanMV main keeps
        one: its KPU object still points at the last input)."""
        if not self._block:
            return
        gc.collect()
        held = []
        try:
            for _ in range(self.input_copies + SPARE_BLOCKS):
                held.append(bytearray(self._block + HOLD_SLACK))
        except MemoryError:
            pass
        self._held = held

    def _records(self, read):
        """Every returned output, read with read(i) -> [float] one at a time (each list dropped at once)."""
        records = []
        for i in range(len(self.returned)):
            if len(self.out_bufs) <= i:
                self.out_bufs.append([bytearray(0)])
            values = read(i)
            raw = pack_floats(values, self.out_bufs[i])
            values = None
            records.append(output_record(self.outputs[i] if i < len(self.outputs) else None, raw))
        return records


class CanMVBackend(_CanMVBase):
    """CanMV main `from maix import KPU` (a class, Maix/maix_kpu/Maix_kpu.c): load_kmodel, and
    run_with_output(path, getlist=True), which reads a raw input file and returns output 0 only.
    Its nncase runtime is kmodel v4's (MODEL_VERSION 4): v3/v4. py_kpu_run_with_output m_malloc's the
    file's size on the GC heap on every call and keeps the pointer in the KPU object (km->inputs_addr)
    until the next call has allocated its own: two inputs on the heap at once. So the runner streams
    plain inputs straight into the file (streams_input) when the heap cannot also hold them whole."""

    name = "canmv"

    def __init__(self, kpu_class, input_path, versions, max_output=4096):
        self.kpu_class = kpu_class
        self.input_path = input_path
        self.kmodel_versions = tuple(versions)
        self.max_output = max_output
        self.kpu = None
        self.outputs = []
        self.returned = []
        self.out_bufs = []

    def choose_streaming(self, wanted, reserve, copies, choice=None):
        """Stream inputs to the file (no runner buffer, no ZLIB/KEEP/CACHED) when RAM buffers would cut
        max_input below `wanted`, or when the config says so (choice True/False)."""
        if choice is None:
            choice = self.input_limit(wanted, reserve, copies) < wanted
            drop(self._held)
            drop(self.runner_buffers)
            self._held = self.runner_buffers = None  # only measured: make_runner asks again
            gc.collect()
        self.streams_input = bool(choice)
        return self.streams_input

    def unload(self):
        if self.kpu is not None:
            self.kpu.deinit()
            self.kpu = None
            gc.collect()

    def open_input(self, n):
        return open(self.input_path, "wb")  # noqa: SIM115 - the runner writes the chunks, then closes it

    def load(self, source, size, version, inputs, outputs):
        self.unload()
        self.kpu = self.kpu_class()
        if isinstance(source, int):
            self.kpu.load_kmodel(source, size)
        else:
            self.kpu.load_kmodel(source)
        self.outputs = outputs
        self.returned = [returned_output(o) for o in outputs[:1]] if outputs else [(w.DT_FLOAT32, (0,))]
        return inputs, self.returned if outputs else []

    def infer(self, data, n):
        if data is not None:  # the input is in the runner's RAM (not streamed): the firmware reads a file
            with open(self.input_path, "wb") as f:
                f.write(data[:n])
        self._give()  # run_with_output m_malloc's n bytes (before the clock starts: that is the file read)
        gc.collect()
        start = ticks_us()
        try:
            values = self.kpu.run_with_output(self.input_path, getlist=True)
            micros = elapsed_us(start)
            records = self._records(lambda i: values)
        finally:
            values = None
            self._take()
        return micros, records


def gray_size(shape, n):
    """(width, height) of a one-channel image holding an input of this shape; None if it has channels."""
    dims = [d for d in shape if d != 1]
    if not dims:
        return n, 1
    if len(dims) == 1:
        return dims[0], 1
    if len(dims) == 2:
        return dims[1], dims[0]
    return None


class CanMVKPUBackend(_CanMVBase):
    """CanMV branch feat/kpu (nncase 1.x runtime, v3/v4/v5): `maix.KPU` is a zero-argument function
    (Maix/modMaix.c mod_maix_new_kpu) that mallocs a KPU object and lists it in maix_kpu_helper's
    bounded table, so the runner makes one at boot and keeps it: load(path | offset, size=),
    run(image), get_outputs(index) (maix_kpu.c k210_kpu_get_outputs: output `index`'s buffer read as
    byte count // 4 float32 values), deinit(). The input reaches the KPU only as an image's pix_ai: a
    grayscale PGM loaded by the `image` module (GC heap: the pixels) keeps its bytes, and pix_to_ai
    copies them (GC heap again): two copies. Colour images pass through RGB565 and lose bits, so
    inputs with channels are refused."""

    name = "canmv-kpu"

    def __init__(self, kpu, image_module, image_path, versions, max_output=4096):
        self.kpu = kpu
        self.image = image_module
        self.image_path = image_path
        self.kmodel_versions = tuple(versions)
        self.max_output = max_output
        self.loaded = False
        self.inputs = []
        self.outputs = []
        self.returned = []
        self.out_bufs = []

    def load(self, source, size, version, inputs, outputs):
        self.unload()
        if isinstance(source, int):
            self.kpu.load(source, size=size)
        else:
            self.kpu.load(source)
        self.loaded = True
        self.inputs = inputs
        self.outputs = outputs
        # Every output: get_outputs takes its index. Undeclared outputs: output 0 as float32 values.
        self.returned = [returned_output(o) for o in outputs] if outputs else [(w.DT_FLOAT32, (0,))]
        return inputs, self.returned if outputs else []

    def unload(self):
        if self.loaded:
            self.kpu.deinit()  # frees the model buffer; the object itself stays for the next load
            self.loaded = False
            gc.collect()

    def infer(self, data, n):
        size = (n, 1)
        if self.inputs:
            dtype, shape = self.inputs[0]
            size = gray_size(shape, n) if w.DTYPE_SIZES.get(dtype) == 1 else None
            if size is None:
                raise k210runner.RunnerError(w.E_INFER_FAILED, "CanMV's KPU.run takes an image: only inputs of "
                                             "one 8-bit channel reach the KPU unchanged (this one is %s %s)"
                                             % (w.DTYPE_NAMES.get(dtype, dtype), shape))
        with open(self.image_path, "wb") as f:
            f.write(("P5\n%d %d\n255\n" % size).encode())
            f.write(data[:n])
        self._give()  # the image's pixels and pix_ai: two blocks of n bytes
        try:
            img = self.image.Image(self.image_path)
            img.pix_to_ai()
            gc.collect()
            start = ticks_us()
            self.kpu.run(img)
            micros = elapsed_us(start)
            img = None
            records = self._records(self.kpu.get_outputs)
        finally:
            img = None
            self._take()
        return micros, records


def heap_free():
    """Free GC heap in bytes after a collection; None where the interpreter does not say (CPython)."""
    mem_free = getattr(gc, "mem_free", None)
    if mem_free is None:
        return None
    gc.collect()
    return mem_free()


# Bytes each held block has beyond the input: the small objects the firmware (or the image loader's file
# object) allocates first, at the bottom of the run it then takes its block from.
HOLD_SLACK = 4096
# Blocks held beyond the firmware's own count: MicroPython's GC is conservative, and a block the runner
# let go may still be seen from a stale word on the stack (MicroPython 1.10 does keep such blocks), so
# the firmware must find a run of free heap even when one of the released ones stays taken.
SPARE_BLOCKS = 1


def take_blocks(n, count, rest):
    """`count` blocks of n bytes from the GC heap, if `rest` bytes more can be had beside them; else None."""
    held = []
    spare = None
    try:
        for _ in range(count):
            held.append(bytearray(n))
        spare = bytearray(rest)
    except MemoryError:
        drop(held)
        held = None
    spare = None  # noqa: F841 - dropped before the collection: only tried for
    gc.collect()
    return held


def drop(blocks):
    """Empty a list of blocks before letting it go: a conservative GC may still see the list itself
    (a stale word on the stack), and must not keep its blocks alive through it."""
    if blocks is not None:
        for i in range(len(blocks)):
            blocks[i] = None


def float_list_cost(n=64):
    """GC heap bytes one element of a list of floats costs (list slot + boxed float), measured."""
    before = heap_free()
    if before is None:
        return None
    probe = [0.0] * n
    for i in range(n):
        probe[i] = i + 0.5
    used = before - gc.mem_free()
    probe = None
    gc.collect()
    return (used + n - 1) // n if used > 0 else None


def detect_backend(config):
    """The KPU API this firmware has, from what `maix.KPU` is: CanMV main's class (load_kmodel), CanMV
    feat/kpu's factory function (its objects have get_outputs; feat/kpu has no `KPU` module), else
    MaixPy-v1's `KPU` module. HELLO then lists only what that runtime loads."""
    try:
        from maix import KPU as maix_kpu
    except ImportError:
        maix_kpu = None
    versions = config.get("canmv_kmodel_versions")
    max_output = config.get("max_output", 4096)
    if maix_kpu is not None and hasattr(maix_kpu, "load_kmodel"):
        return CanMVBackend(maix_kpu, config["input_path"], versions or (3, 4), max_output)
    if maix_kpu is not None:
        kpu = maix_kpu()
        if not hasattr(kpu, "get_outputs"):
            raise ImportError("maix.KPU() has neither load_kmodel nor get_outputs: a CanMV build this runner "
                              "does not know")
        import image

        return CanMVKPUBackend(kpu, image, config["image_path"], versions or (3, 4, 5), max_output)
    import KPU as kpu

    return MaixPyV1Backend(kpu)


def boot_nonce(config):
    """A nonce that differs on every boot: boot counter on flash, mixed with timing and urandom."""
    count = 0
    path = config.get("boot_counter_path")
    if path:
        try:
            with open(path) as f:
                count = int(f.read() or "0")
        except (OSError, ValueError):
            count = 0
        try:
            with open(path, "w") as f:
                f.write("%d" % (count + 1))
        except OSError:
            pass
    noise = utime.ticks_us()
    try:
        import urandom

        noise ^= urandom.getrandbits(32)
    except ImportError:
        pass
    return ((count * 2654435761) ^ noise) & 0xFFFFFFFF or 1


def open_uart(config):
    from fpioa_manager import fm
    from machine import UART

    fm.register(config["tx_pin"], fm.fpioa.UART1_TX)
    fm.register(config["rx_pin"], fm.fpioa.UART1_RX)
    return UART(UART.UART1, config["baud"], 8, None, 1, timeout=10, read_buf_len=config["read_buf_len"])


def load_config():
    config = dict(CONFIG)
    try:
        import k210_config

        config.update(k210_config.CONFIG)
    except ImportError:
        pass
    return config


def reboot():
    import machine

    machine.reset()


def sample_cache(config):
    """The on-board sample cache (k210cache.py), or None: no card, no module, switched off."""
    try:
        import k210cache
    except ImportError:
        try:
            from k210.firmware import k210cache
        except ImportError:
            return None
    return k210cache.from_config(config)


def inflater(config):
    """zlib decompression for ZLIB-mode inputs, or None where the firmware has none."""
    if not config.get("inflate"):
        return None
    try:
        import uzlib as zlib
    except ImportError:
        try:
            import zlib
        except ImportError:
            return None
    return zlib.decompress


def make_runner(config, backend, send):
    store = k210runner.FileStore(config["upload_path"]) if config.get("upload_path") else None
    reserve = config["heap_reserve"] + 4 * config["max_frame"]
    inflate = inflater(config)
    copies = 2 if inflate is not None else 1
    choose = getattr(backend, "choose_streaming", None)
    stream = choose is not None and choose(config["max_input"], reserve, copies, config.get("stream_input"))
    if stream:  # the input goes straight to the firmware's input file: no RAM copy, so no ZLIB/KEEP/CACHED
        inflate = None
        copies = 0
    max_input = backend.input_limit(config["max_input"], reserve, copies)
    buffers = getattr(backend, "runner_buffers", None)
    backend.runner_buffers = None
    return k210runner.Runner(
        backend, send, store, boot_nonce(config), max_frame=config["max_frame"], rx_window=config["read_buf_len"],
        max_model=config["max_model"], max_input=max_input, firmware=FIRMWARE, fw_version=FW_VERSION,
        reboot=reboot, cache=None if stream else sample_cache(config), inflate=inflate, stream_input=stream,
        buffers=buffers)


def main():
    config = load_config()
    uart = open_uart(config)
    backend = detect_backend(config)
    runner = make_runner(config, backend, uart.write)
    boot_error = None
    if config.get("model") is not None:
        try:
            load_boot_model(runner, config)
        except Exception as e:  # keep serving: the host can still upload a model
            boot_error = "boot model %r not loaded: %s" % (config["model"], e)
    gc.collect()
    runner.announce()
    if boot_error:
        runner.log(w.LOG_ERROR, boot_error, keep=True)
    serve(uart, runner)


def serve(uart, runner):
    buf = bytearray(256)
    readinto = getattr(uart, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buf)
            if n:
                runner.feed(buf, n)
        else:
            data = uart.read(len(buf))
            if data:
                runner.feed(data)


if __name__ == "__main__":
    main()
