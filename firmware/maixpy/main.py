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
#   KPU (MaixPy-v1):      load(path | flash_offset), set_outputs(task, i, w, h, ch),
#                         forward(task, list_of_floats) -> fmap, get_output(task, i), deinit(task);
#                         fmap: bytes(fmap) (buffer protocol), fmap[:1] (fmap.typecode() is broken)
#   maix.KPU (CanMV v1.0.x): KPU(), load_kmodel(path) / load_kmodel(flash_offset, size),
#                         run_with_output(path_to_raw_input, getlist=True) -> [float], deinit()
#   maix.KPU (CanMV feat/kpu): KPU(), load(path | flash_offset), run(image), get_outputs() -> [float]
#                         (output 0's buffer read as float32), deinit(); image.Image(path), img.pix_to_ai()
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
    "max_input": 163840,  # largest input tensor, bytes (preallocated; MaixPy-v1 cuts it to what its heap holds)
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
        return max(0, min(wanted, fit - fit % 4))

    def load(self, source, size, version, inputs, outputs):
        self.unload()
        self.task = self.kpu.load(source)
        if version == 4:
            for i in range(len(outputs)):
                ow, oh, och = whc(outputs[i][1])
                self.kpu.set_outputs(self.task, i, ow, oh, och)
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
            for i in range(count):
                values[i] = struct.unpack_from("<f", data, 4 * i)[0]
            gc.collect()  # before the clock starts, so a collection never lands inside the timing
            start = ticks_us()
            fmap = self.kpu.forward(self.task, values)
            micros = elapsed_us(start)
        except MemoryError:
            self.values = []  # a half-built list must not keep the heap full for the next request
            gc.collect()
            raise k210runner.RunnerError(w.E_INFER_FAILED, "%d input floats do not fit the GC heap" % count) from None
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


def output0_record(outputs, raw):
    """Output 0 from its bytes: the declared dtype and shape when the sizes agree, else float32 values."""
    if outputs and w.tensor_nbytes(outputs[0][0], outputs[0][1]) == len(raw):
        return outputs[0][0], tuple(outputs[0][1]), raw
    return w.DT_FLOAT32, (len(raw) // 4,), raw


class _CanMVBase:
    """What both CanMV APIs share: the versions their runtime loads, no heap-sized input, deinit to unload."""

    kmodel_versions = ()
    kpu = None

    def why_not(self, version):
        return "this CanMV build loads kmodel %s; this file is %s" % (
            "/".join("v%d" % v for v in self.kmodel_versions), "kmodel v%d" % version if version else "no kmodel")

    def input_limit(self, wanted, reserve, copies=1):
        return wanted

    def unload(self):
        if self.kpu is not None:
            self.kpu.deinit()
            self.kpu = None
            gc.collect()


class CanMVBackend(_CanMVBase):
    """Canaan CanMV v1.0.x `from maix import KPU` with load_kmodel/run_with_output: input through a raw
    file, output 0 as a float list. Its runtime loads kmodel v3/v4."""

    name = "canmv"

    def __init__(self, kpu_class, input_path, versions):
        self.kpu_class = kpu_class
        self.input_path = input_path
        self.kmodel_versions = tuple(versions)
        self.kpu = None
        self.outputs = []
        self.out_buf = [bytearray(0)]

    def load(self, source, size, version, inputs, outputs):
        self.unload()
        self.kpu = self.kpu_class()
        if isinstance(source, int):
            self.kpu.load_kmodel(source, size)
        else:
            self.kpu.load_kmodel(source)
        self.outputs = outputs
        # run_with_output returns output 0 only, as float32.
        return inputs, [(w.DT_FLOAT32, shape) for _, shape in outputs[:1]]

    def infer(self, data, n):
        gc.collect()
        with open(self.input_path, "wb") as f:
            f.write(data[:n])
        start = ticks_us()
        values = self.kpu.run_with_output(self.input_path, getlist=True)
        micros = elapsed_us(start)
        raw = pack_floats(values, self.out_buf)
        return micros, [(w.DT_FLOAT32, shape_or_flat(self.outputs, 0, len(values)), raw)]


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
    """CanMV branch feat/kpu (nncase 1.x runtime): `maix.KPU()` with load(path | offset), run(image) and
    get_outputs() (output 0 as float32 values). The input reaches the KPU only as an image's `pix_ai`:
    a grayscale PGM file loaded by the `image` module keeps its bytes exactly, so models whose input is
    one 8-bit channel run; colour inputs would pass through RGB565 and lose bits, so they are refused."""

    name = "canmv-kpu"

    def __init__(self, kpu_class, image_module, image_path, versions):
        self.kpu_class = kpu_class
        self.image = image_module
        self.image_path = image_path
        self.kmodel_versions = tuple(versions)
        self.kpu = None
        self.inputs = []
        self.outputs = []
        self.out_buf = [bytearray(0)]

    def load(self, source, size, version, inputs, outputs):
        self.unload()
        kpu = self.kpu_class()
        kpu.load(source)
        self.kpu = kpu
        self.inputs = inputs
        self.outputs = outputs
        return inputs, list(outputs[:1])  # get_outputs() hands back output 0 only

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
        img = self.image.Image(self.image_path)
        img.pix_to_ai()
        gc.collect()
        start = ticks_us()
        self.kpu.run(img)
        micros = elapsed_us(start)
        values = self.kpu.get_outputs()
        img = None
        raw = pack_floats(values, self.out_buf)
        values = None
        return micros, [output0_record(self.outputs, raw)]


def heap_free():
    """Free GC heap in bytes after a collection; None where the interpreter does not say (CPython)."""
    mem_free = getattr(gc, "mem_free", None)
    if mem_free is None:
        return None
    gc.collect()
    return mem_free()


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
    """The KPU API this firmware has: CanMV's `maix.KPU` (v1.0.x: load_kmodel; feat/kpu: load/run/
    get_outputs), else MaixPy-v1's `KPU` module. HELLO then lists only what that runtime loads."""
    try:
        from maix import KPU as CanMVKPU
    except ImportError:
        CanMVKPU = None
    versions = config.get("canmv_kmodel_versions")
    if CanMVKPU is not None and hasattr(CanMVKPU, "load_kmodel"):
        return CanMVBackend(CanMVKPU, config["input_path"], versions or (3, 4))
    if CanMVKPU is not None and hasattr(CanMVKPU, "get_outputs"):
        import image

        return CanMVKPUBackend(CanMVKPU, image, config["image_path"], versions or (3, 4, 5))
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
    inflate = inflater(config)
    reserve = config["heap_reserve"] + 4 * config["max_frame"]
    max_input = backend.input_limit(config["max_input"], reserve, 2 if inflate is not None else 1)
    return k210runner.Runner(
        backend, send, store, boot_nonce(config), max_frame=config["max_frame"], rx_window=config["read_buf_len"],
        max_model=config["max_model"], max_input=max_input, firmware=FIRMWARE, fw_version=FW_VERSION,
        reboot=reboot, cache=sample_cache(config), inflate=inflate)


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
