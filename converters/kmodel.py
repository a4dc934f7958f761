"""Read kmodel headers without any runtime: what is inside, where it runs, and who can load it.

Layouts (little-endian) follow the nncase runtimes: v3 is the nncase 0.1 / SDK `kpu.h` header,
v4 the nncase 0.2 `model_header`, v5 the nncase 1.x model + module + function headers. v5 was
checked against kmodels produced by nncase 1.9 here, all of them against the real files in
shared/kmodels-realworld (see its SOURCES.md). Formats that no K210 runtime here loads (legacy v1,
the pre-release v5 layout, v6 for the K230) are named by `UnloadableKmodelError`, not called corrupt.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field

from k210.core import firmwares
from k210.core.errors import BadInputError

KMODEL_MAGIC = b"LDMK"  # 'KMDL' written as a little-endian u32

# nncase 1.x datatype_t
V5_DATATYPES = {
    0: "int8", 1: "int16", 2: "int32", 3: "int64", 4: "uint8", 5: "uint16", 6: "uint32",
    7: "uint64", 8: "float16", 9: "float32", 10: "float64", 11: "bfloat16",
}
# nncase 1.x memory_location_t
V5_LOCATIONS = {0: "input", 1: "output", 2: "rdata", 3: "data", 4: "shared_data", 64: "kpu"}
# nncase 0.2 datatype_t and memory_type_t
V4_DATATYPES = {0: "float32", 1: "uint8"}
V4_LOCATIONS = {0: "const", 1: "main", 2: "kpu"}

SYMBOLIC_DIM = 0xFFFFFFFF

# nncase 0.1 (kmodel v3) layer types from 10240 up run on the KPU: K210Conv, K210AddPadding,
# K210RemovePadding, K210Upload (the SDK's kpu.h KL_K210_*). Types the first layer tells the input by:
V3_FIRST_KPU_LAYER = 10240
V3_K210_CONV = 10240
V3_FULLY_CONNECTED = 18
# nncase 0.2 (kmodel v4) opcodes that run on the KPU (runtime_op.def): KPUUpload, KPUConv2D.
V4_KPU_OPCODES = (0x2001, 0x2002)

# Which firmware loads which kmodel version: k210.core.firmwares, the one registry.


@dataclass
class TensorDesc:
    dtype: str | None
    shape: list[int] | None
    size: int  # bytes
    location: str | None = None


@dataclass
class MemPool:
    location: str
    size: int


@dataclass
class Module:
    type: str
    version: int
    size: int
    mempools: list[MemPool] = field(default_factory=list)
    functions: int = 0
    sections: int = 0


@dataclass
class KModelInfo:
    version: int
    size: int
    modules: list[Module]
    inputs: list[TensorDesc]
    outputs: list[TensorDesc]
    flags: int = 0
    main_memory: int | None = None  # v3/v4: main memory usage in bytes
    layers: int | None = None  # v3 layers / v4 nodes
    kpu_layers: int | None = None  # of those, how many run on the KPU

    @property
    def has_kpu_code(self) -> bool:
        return any(m.type == "k210" for m in self.modules) or bool(self.kpu_layers)

    @property
    def loaders(self) -> list[str]:
        return [fw.loader_key for fw in firmwares.loaders(self.version)]

    @property
    def mempools(self) -> dict[str, int]:
        """Largest requirement per memory location over all modules."""
        pools: dict[str, int] = {}
        for module in self.modules:
            for pool in module.mempools:
                pools[pool.location] = max(pools.get(pool.location, 0), pool.size)
        return pools

    def module_text(self, module: Module) -> str:
        """Where a module's code runs, for people: v3/v4 say it per layer, v5 per module."""
        if self.layers is not None:
            return f"{module.type} ({self.kpu_layers} of {self.layers} layers on the KPU)"
        return f"{module.type} ({'KPU code' if module.type == 'k210' else 'CPU'})"

    @property
    def missing_shape_text(self) -> str:
        return f"? (v{self.version} stores none)"

    def loadable_by(self, firmware: str) -> bool:
        """`firmware`: a --firmware key or a loader key (k210.core.firmwares.get)."""
        return firmwares.get(firmware).loads(self.version)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "size": self.size,
            "flags": self.flags,
            "modules": [asdict(m) for m in self.modules],
            "kpu_code": self.has_kpu_code,
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
            "mempools": self.mempools,
            "main_memory": self.main_memory,
            "layers": self.layers,
            "kpu_layers": self.kpu_layers,
            "firmware": {
                fw.loader_key: {"name": fw.name, "loads": fw.loads(self.version), "note": fw.note}
                for fw in firmwares.FIRMWARES.values()
            },
        }


class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise BadInputError(f"truncated kmodel: needs {self.offset + size} bytes, has {len(self.data)}")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def u32(self) -> int:
        return self.take("<I")[0]


@dataclass
class KmodelFormat:
    """A kmodel format no K210 runtime here loads: what it is, who made it, what (if anything) loads it."""

    version: int
    name: str
    made_by: str
    loaded_by: str
    fix: str
    details: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.name}, made by {self.made_by}; {self.loaded_by}; {self.fix}"

    def to_dict(self) -> dict:
        return asdict(self)


class UnloadableKmodelError(BadInputError):
    """A real kmodel, intact, in a format that no firmware or simulator this project targets can load."""

    def __init__(self, fmt: KmodelFormat) -> None:
        super().__init__(fmt.describe())
        self.format = fmt


def kmodel_version(data: bytes) -> int | None:
    """The kmodel version of `data`, or None when it is not a kmodel."""
    if len(data) >= 8 and data[:4] == KMODEL_MAGIC:
        return struct.unpack_from("<I", data, 4)[0]
    if len(data) >= 28 and struct.unpack_from("<I", data, 0)[0] == 3:
        return 3
    if _looks_like_v1(data):
        return 1
    return None


def parse_kmodel(data: bytes) -> KModelInfo:
    """Parse a kmodel's headers; raise BadInputError for anything that is not a sane kmodel.

    Intact kmodels in formats nothing here loads raise UnloadableKmodelError (a BadInputError) that
    names the format and its runtime."""
    version = kmodel_version(data)
    if version == 5:
        if _is_prerelease_v5(data):
            raise UnloadableKmodelError(_prerelease_v5_format(data))
        return _parse_v5(data)
    if version == 4:
        return _parse_v4(data)
    if version == 3:
        return _parse_v3(data)
    if version == 1:
        raise UnloadableKmodelError(_v1_format(data))
    if version == 6:
        raise UnloadableKmodelError(KmodelFormat(
            6, "kmodel v6 (K230)", "nncase 2.x for the Kendryte K230",
            "nothing for the K210 loads it (MaixPy, CanMV-K210, the C SDK and nncase 1.9 read v3-v5)",
            "compile the model for the K210 with nncase 1.9 (k210 compile)"))
    if version is None:
        raise BadInputError("not a kmodel (no 'LDMK' magic, no v3 header and no legacy v1 header)")
    raise BadInputError(f"unsupported kmodel version {version} (known: 1, 3, 4, 5, 6)")


def _looks_like_v1(data: bytes) -> bool:
    """kendryte-standalone-sdk kpu_model_header_t: version 1, flags, layers, max_start_address,
    layers_argument_start, then 12 u64 kpu_layer_argument_t per layer."""
    if len(data) < 20:
        return False
    version, _flags, layers, _max_start, args_start = struct.unpack_from("<5I", data, 0)
    return version == 1 and 0 < layers <= 1024 and 20 <= args_start < len(data) \
        and args_start + 96 * layers <= len(data)


def _v1_format(data: bytes) -> KmodelFormat:
    _version, flags, layers, max_start, args_start = struct.unpack_from("<5I", data, 0)
    return KmodelFormat(
        1, "kmodel v1 (legacy, before nncase)", "the Kendryte model compiler",
        "only the standalone SDK's legacy kpu_model_load_from_buffer loads it; kpu_load_kmodel, MaixPy, "
        "CanMV and nncase do not",
        "recompile the original model with nncase (k210 compile)",
        {"flags": flags, "layers": layers, "kpu_layers": layers, "max_start_address": max_start,
         "layers_argument_start": args_start})


def _is_prerelease_v5(data: bytes) -> bool:
    # Released v5 (nncase >= 1.0.0) has header_size = 32 at offset 8; nncase master before 2021-08-18
    # wrote flags there instead (a 24-byte header {identifier, version, flags, alignment, modules,
    # main_module}) followed by 40-byte module headers whose sizes exclude the header.
    return len(data) >= 12 and struct.unpack_from("<I", data, 8)[0] != 32


def _prerelease_v5_format(data: bytes) -> KmodelFormat:
    details: dict = {}
    try:
        details = _parse_prerelease_v5(data)
    except (BadInputError, UnicodeDecodeError):
        raise BadInputError("corrupt kmodel v5: header size is not 32 and it is not the pre-release "
                            "24-byte layout either") from None
    return KmodelFormat(
        5, "kmodel v5, pre-release layout (24-byte header without header_size)",
        "an nncase master build from before 2021-08-18 (before v1.0.0)",
        "no released runtime loads it: nncase 1.x runtimes (CanMV feat/kpu, the C SDK, nncase 1.9's "
        "simulator) expect the 32-byte v1.0 header",
        "recompile the original model with nncase 1.9 (k210 compile)", details)


def _parse_prerelease_v5(data: bytes) -> dict:
    r = _Reader(data)
    _magic, _version, flags, alignment, n_modules, main_module = r.take("<4s5I")
    _check_count(n_modules, 64, "modules")
    modules = []
    offset = 24
    for _ in range(n_modules):
        r.offset = offset
        raw_type, size, n_pools, n_inputs, n_outputs, n_sections, _reserved = r.take("<16s6I")
        if offset + 40 + size > len(data):
            raise BadInputError("truncated")
        modules.append({"type": raw_type.split(b"\0", 1)[0].decode("ascii"), "size": size, "mempools": n_pools,
                        "inputs": n_inputs, "outputs": n_outputs, "sections": n_sections})
        offset += 40 + size
    if offset != len(data):
        raise BadInputError("module sizes do not add up to the file")
    return {"flags": flags, "alignment": alignment, "main_module": main_module, "modules": modules}


def _check_count(value: int, limit: int, what: str) -> int:
    if value > limit:
        raise BadInputError(f"corrupt kmodel: {value} {what}")
    return value


def _parse_v5(data: bytes) -> KModelInfo:
    r = _Reader(data)
    _magic, version, header_size, flags, _alignment, n_modules, entry_module, entry_function = r.take("<4s7I")
    if header_size != 32:
        raise BadInputError(f"corrupt kmodel v5: model header size {header_size}, expected 32")
    _check_count(n_modules, 64, "modules")
    modules: list[Module] = []
    inputs: list[TensorDesc] = []
    outputs: list[TensorDesc] = []
    offset = header_size
    for index in range(n_modules):
        r.offset = offset
        raw_type, mod_version, mod_header_size, mod_size, n_pools, n_shared, n_sections, n_functions, _ = (
            r.take("<16s8I")
        )
        if mod_header_size != 48 or mod_size < mod_header_size or offset + mod_size > len(data):
            raise BadInputError(f"corrupt or truncated kmodel v5: module {index} header")
        mod_type = raw_type.split(b"\0", 1)[0].decode("ascii", "replace")
        pools = []
        for _ in range(_check_count(n_pools, 64, "mempools")):
            location, _pad, size = r.take("<B3sI")
            pools.append(MemPool(V5_LOCATIONS.get(location, f"loc{location}"), size))
        for _ in range(_check_count(n_shared, 64, "shared mempools")):
            r.take("<2I")  # shared_mempool_desc: u32 module, u32 size
        functions = [_parse_v5_function(r) for _ in range(_check_count(n_functions, 1024, "functions"))]
        if index == entry_module and functions:
            if entry_function >= len(functions):
                raise BadInputError("corrupt kmodel v5: entry function out of range")
            inputs, outputs = functions[entry_function]
        modules.append(Module(mod_type, mod_version, mod_size, pools, n_functions, n_sections))
        offset += mod_size
    if entry_module >= max(n_modules, 1):
        raise BadInputError("corrupt kmodel v5: entry module out of range")
    return KModelInfo(5, len(data), modules, inputs, outputs, flags=flags)


def _parse_v5_function(r: _Reader) -> tuple[list[TensorDesc], list[TensorDesc]]:
    start = r.offset
    header_size, size, _in_pool, _out_pool, n_inputs, n_outputs, _entry, _text = r.take("<8I")
    if header_size < 32 or size < header_size:
        raise BadInputError("corrupt kmodel v5: function header")
    _check_count(n_inputs, 256, "inputs")
    _check_count(n_outputs, 256, "outputs")
    # nncase writes the input ranges, then the input shapes, then the same for the outputs.
    inputs = _read_tensors(r, n_inputs)
    outputs = _read_tensors(r, n_outputs)
    r.offset = start + size
    return inputs, outputs


def _read_tensors(r: _Reader, count: int) -> list[TensorDesc]:
    ranges = [r.take("<BBHII") for _ in range(count)]
    shapes = []
    for _ in range(count):
        rank = _check_count(r.u32(), 16, "dimensions")
        shapes.append([_dim(d) for d in r.take(f"<{rank}I")])
    return [
        TensorDesc(V5_DATATYPES.get(dtype, f"dt{dtype}"), shape, nbytes, V5_LOCATIONS.get(location))
        for (location, dtype, _shared, _start, nbytes), shape in zip(ranges, shapes)
    ]


def _dim(value: int) -> int:
    return -1 if value == SYMBOLIC_DIM else value


def _parse_v4(data: bytes) -> KModelInfo:
    r = _Reader(data)
    _magic, version, flags, _target, n_constants, main_mem, n_nodes, n_inputs, n_outputs, _ = r.take("<4s9I")
    _check_count(n_inputs, 256, "inputs")
    _check_count(n_outputs, 256, "outputs")
    _check_count(n_nodes, 1 << 16, "nodes")
    in_ranges = [r.take("<4I") for _ in range(n_inputs)]
    in_shapes = [list(r.take("<4i")) for _ in range(n_inputs)]
    out_ranges = [r.take("<4I") for _ in range(n_outputs)]
    if n_constants > len(data):
        raise BadInputError("corrupt kmodel v4: constants larger than the file")
    r.offset += n_constants
    opcodes = [r.take("<2I")[0] for _ in range(n_nodes)]  # node headers: opcode, body size

    def desc(rng: tuple, shape: list[int] | None) -> TensorDesc:
        location, dtype, _start, size = rng
        return TensorDesc(V4_DATATYPES.get(dtype, f"dt{dtype}"), shape, size, V4_LOCATIONS.get(location))

    inputs = [desc(rng, shape) for rng, shape in zip(in_ranges, in_shapes)]
    # v4 stores no output shapes: MaixPy needs kpu.set_outputs() for exactly this reason.
    outputs = [desc(rng, None) for rng in out_ranges]
    modules = [Module("kmodel-v4", 4, len(data), [MemPool("main", main_mem)], n_nodes, 0)]
    kpu_nodes = sum(op in V4_KPU_OPCODES for op in opcodes)
    return KModelInfo(4, len(data), modules, inputs, outputs, flags=flags, main_memory=main_mem,
                      layers=n_nodes, kpu_layers=kpu_nodes)


def _parse_v3(data: bytes) -> KModelInfo:
    r = _Reader(data)
    _version, flags, arch, n_layers, _max_start, main_mem, n_outputs = r.take("<7I")
    if arch != 0:
        raise BadInputError(f"not a kmodel v3 (arch field {arch}, expected 0)")
    _check_count(n_outputs, 256, "outputs")
    _check_count(n_layers, 1 << 16, "layers")
    # nncase 0.1 writes every output as float32 {address, size}; it stores no shapes.
    outputs = [TensorDesc("float32", None, r.take("<2I")[1]) for _ in range(n_outputs)]
    headers = [r.take("<2I") for _ in range(n_layers)]  # layer headers: type, body size
    modules = [Module("kmodel-v3", 3, len(data), [MemPool("main", main_mem)], n_layers, 0)]
    kpu_layers = sum(layer_type >= V3_FIRST_KPU_LAYER for layer_type, _ in headers)
    # A v3 model has exactly one input, implicit: kpu_run_kmodel takes one `src`.
    inputs = [_v3_input(data, headers[0][0] if headers else None, r.offset)]
    return KModelInfo(3, len(data), modules, inputs, outputs, flags=flags, main_memory=main_mem,
                      layers=n_layers, kpu_layers=kpu_layers)


def _v3_input(data: bytes, first_type: int | None, body: int) -> TensorDesc:
    """The implicit input, described from the first layer where its body says it; else unknown."""
    try:
        if first_type == V3_K210_CONV:
            # kpu_model_conv_layer_argument_t {flags, main_mem_out, layer_offset, ...} -> kpu_layer_argument_t
            layer_offset = struct.unpack_from("<3I", data, body)[2]
            channels, size = struct.unpack_from("<2Q", data, layer_offset + 16)
            c, w, h = (channels & 0x3FF) + 1, (size & 0x3FF) + 1, ((size >> 10) & 0x1FF) + 1
            return TensorDesc("uint8", [1, c, h, w], c * h * w, "kpu")
        if first_type == V3_FULLY_CONNECTED:
            # {flags, main_mem_in, main_mem_out, in_channels, out_channels, act, weights...}
            in_channels = struct.unpack_from("<4I", data, body)[3]
            return TensorDesc("float32", [1, in_channels], 4 * in_channels, "main")
    except struct.error:
        pass
    return TensorDesc(None, None, 0)
