"""Read kmodel v3/v4/v5 headers without any runtime: what is inside and who can load it.

Layouts (little-endian) follow the nncase runtimes: v3 is the nncase 0.1 / SDK `kpu.h` header,
v4 the nncase 0.2 `model_header`, v5 the nncase 1.x model + module + function headers. v5 was
checked against kmodels produced by nncase 1.9 here.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field

from k210.host.errors import BadInputError

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

# Which firmware loads which kmodel version (see the facts file; MaixPy-v1 #423/#434).
FIRMWARE_LOADERS = {
    "maixpy": {
        "name": "Sipeed MaixPy-v1 (import KPU)",
        "versions": (3, 4),
        "note": "standard builds load v3/v4; 'minimum' builds v3 only; v5 fails (error 2002/2015)",
    },
    "canmv": {
        "name": "Canaan CanMV-K210 (from maix import KPU)",
        "versions": (3, 4, 5),
        "note": "v3/v4 on the main branch; v5 only on branch feat/kpu (nncase 1.x runtime)",
    },
    "sdk": {
        "name": "kendryte-standalone-sdk (C, develop)",
        "versions": (3, 4, 5),
        "note": "v5 needs the K210 runtime of the same nncase release that compiled the model",
    },
}


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

    @property
    def has_kpu_code(self) -> bool:
        return any(m.type == "k210" for m in self.modules)

    @property
    def loaders(self) -> list[str]:
        return [key for key, fw in FIRMWARE_LOADERS.items() if self.version in fw["versions"]]

    @property
    def mempools(self) -> dict[str, int]:
        """Largest requirement per memory location over all modules."""
        pools: dict[str, int] = {}
        for module in self.modules:
            for pool in module.mempools:
                pools[pool.location] = max(pools.get(pool.location, 0), pool.size)
        return pools

    def loadable_by(self, firmware: str) -> bool:
        return self.version in FIRMWARE_LOADERS[firmware]["versions"]

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
            "firmware": {
                key: {"name": fw["name"], "loads": self.version in fw["versions"], "note": fw["note"]}
                for key, fw in FIRMWARE_LOADERS.items()
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


def kmodel_version(data: bytes) -> int | None:
    """The kmodel version of `data`, or None when it is not a kmodel."""
    if len(data) >= 8 and data[:4] == KMODEL_MAGIC:
        return struct.unpack_from("<I", data, 4)[0]
    if len(data) >= 28 and struct.unpack_from("<I", data, 0)[0] == 3:
        return 3
    return None


def parse_kmodel(data: bytes) -> KModelInfo:
    """Parse a kmodel's headers; raise BadInputError for anything that is not a sane kmodel."""
    version = kmodel_version(data)
    if version == 5:
        return _parse_v5(data)
    if version == 4:
        return _parse_v4(data)
    if version == 3:
        return _parse_v3(data)
    if version is None:
        raise BadInputError("not a kmodel (no 'LDMK' magic and no v3 header)")
    raise BadInputError(f"unsupported kmodel version {version} (known: 3, 4, 5)")


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
            r.take("<IB3sI")  # module, location, padding, size
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

    def desc(rng: tuple, shape: list[int] | None) -> TensorDesc:
        location, dtype, _start, size = rng
        return TensorDesc(V4_DATATYPES.get(dtype, f"dt{dtype}"), shape, size, V4_LOCATIONS.get(location))

    inputs = [desc(rng, shape) for rng, shape in zip(in_ranges, in_shapes)]
    # v4 stores no output shapes: MaixPy needs kpu.set_outputs() for exactly this reason.
    outputs = [desc(rng, None) for rng in out_ranges]
    modules = [Module("kmodel-v4", 4, len(data), [MemPool("main", main_mem)], n_nodes, 0)]
    return KModelInfo(4, len(data), modules, inputs, outputs, flags=flags, main_memory=main_mem)


def _parse_v3(data: bytes) -> KModelInfo:
    r = _Reader(data)
    _version, flags, arch, n_layers, _max_start, main_mem, n_outputs = r.take("<7I")
    if arch != 0:
        raise BadInputError(f"not a kmodel v3 (arch field {arch}, expected 0)")
    _check_count(n_outputs, 256, "outputs")
    _check_count(n_layers, 1 << 16, "layers")
    outputs = [TensorDesc(None, None, r.take("<2I")[1]) for _ in range(n_outputs)]
    r.take(f"<{2 * n_layers}I")  # layer headers: type, body size
    modules = [Module("kmodel-v3", 3, len(data), [MemPool("main", main_mem)], n_layers, 0)]
    return KModelInfo(3, len(data), modules, [], outputs, flags=flags, main_memory=main_mem)
