"""Will it fit: KPU RAM per layer, SRAM for weights + working memory, the MaixPy system heap."""

from __future__ import annotations

from k210.converters.kpu_rules import KPU_RAM_BYTES, OpPlacement, Placement
from k210.converters.tflite_reader import TFLiteInfo

SRAM_BYTES = 6 * 1024 * 1024  # general-purpose SRAM: weights, code, heap
MAIXPY_HEAP_BYTES = 2 * 1024 * 1024  # system heap free on standard MaixPy builds (kpu.load mallocs the model)

_DTYPE_BYTES = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2, "int8": 1,
                "float64": 8}
_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


def memory_summary(peak: OpPlacement | None, model: int, working: int, quant: str) -> dict:
    """The report's memory section, in bytes, for any front end (TFLite, ONNX)."""
    return {
        "kpu_ram_bytes": KPU_RAM_BYTES,
        "kpu_peak_bytes": peak.kpu_bytes if peak else 0,
        "kpu_peak_layer": peak.name if peak else None,
        "model_bytes": model,
        "model_basis": "uint8 KPU weights, float32 elsewhere" if quant == "uint8" else "float32 weights",
        "working_bytes": working,
        "total_bytes": model + working,
        "sram_bytes": SRAM_BYTES,
        "maixpy_heap_bytes": MAIXPY_HEAP_BYTES,
    }


def estimate_memory(info: TFLiteInfo, placements: list[OpPlacement], quant: str) -> dict:
    """Sizes in bytes. KPU weights are uint8 after PTQ; everything else keeps its TFLite dtype."""
    kpu_layers = [p for p in placements if p.kpu_bytes]
    peak = max(kpu_layers, key=lambda p: p.kpu_bytes, default=None)
    model = _constant_bytes(info, placements)
    working = _working_bytes(info)
    heaviest = _heaviest_op(info, placements)
    return memory_summary(peak, model, working, quant) | {"heaviest_op": heaviest}


def memory_problems(memory: dict) -> tuple[list[str], list[str]]:
    """(problems, notes): what cannot fit, and what fits only on some firmware."""
    problems: list[str] = []
    notes: list[str] = []
    if memory["kpu_peak_bytes"] > memory["kpu_ram_bytes"]:
        problems.append(
            f"layer {memory['kpu_peak_layer']} needs {memory['kpu_peak_bytes'] // 1024} KiB of KPU RAM for its input "
            f"and output feature maps; the KPU has {memory['kpu_ram_bytes'] // 1024} KiB (nncase: 'KPU allocator "
            "cannot allocate more memory'): lower the resolution or the channels of that layer"
        )
    if memory["total_bytes"] > memory["sram_bytes"]:
        problems.append(
            f"model ~{memory['model_bytes'] / 2**20:.2f} MiB + working memory ~{memory['working_bytes'] / 2**20:.2f} "
            f"MiB exceed the K210's 6 MiB SRAM{_heaviest_hint(memory)}"
        )
    elif memory["model_bytes"] > memory["maixpy_heap_bytes"]:
        notes.append(
            f"model ~{memory['model_bytes'] / 2**20:.2f} MiB is larger than the ~2 MiB system heap free on standard "
            "MaixPy builds (kpu.load mallocs the whole model): use a minimum build or the standalone C SDK"
        )
    return problems, notes


def _heaviest_hint(memory: dict) -> str:
    heaviest = memory.get("heaviest_op")
    if not heaviest:
        return ": use fewer or smaller layers"
    where = "uint8 on the KPU" if heaviest["on_kpu"] else "float32 on the CPU"
    return (f"; the largest weights are {heaviest['name']}'s ({heaviest['op']}, {heaviest['bytes'] / 2**20:.2f} MiB, "
            f"{where}): shrink that layer{' or get it onto the KPU (see its fix)' if not heaviest['on_kpu'] else ''}")


def _heaviest_op(info: TFLiteInfo, placements: list[OpPlacement]) -> dict | None:
    """The op holding the most constant bytes, as the model will store them."""
    by_index = {p.index: p for p in placements}
    best: dict | None = None
    for op in info.ops:
        placement = by_index.get(op.index)
        on_kpu = placement is not None and placement.placement in (Placement.KPU, Placement.KPU_PARTIAL)
        size = 0
        for position, index in enumerate(op.inputs):
            tensor = info.tensor(index) if index >= 0 else None
            if tensor is not None and tensor.is_constant:
                per_item = 1 if on_kpu and position == 1 and op.opcode in _WEIGHTED_OPS else _DTYPE_BYTES.get(
                    tensor.dtype, 4)
                size += _count(tensor.shape) * per_item
        if placement is not None and size and (best is None or size > best["bytes"]):
            best = {"name": placement.name, "op": op.opcode, "bytes": size, "on_kpu": on_kpu}
    return best


def _constant_bytes(info: TFLiteInfo, placements: list[OpPlacement]) -> int:
    on_kpu = {p.index for p in placements if p.placement in (Placement.KPU, Placement.KPU_PARTIAL)}
    kpu_weights = {
        op.inputs[1] for op in info.ops
        if op.index in on_kpu and op.opcode in _WEIGHTED_OPS and len(op.inputs) > 1
    }
    total = 0
    for tensor in info.tensors:
        if not tensor.is_constant:
            continue
        count = _count(tensor.shape)
        total += count if tensor.index in kpu_weights else count * _DTYPE_BYTES.get(tensor.dtype, 4)
    return total


def _working_bytes(info: TFLiteInfo) -> int:
    """Peak over ops of the activations alive around one op (its inputs and outputs): nncase's data pool
    reuses buffers, so this is the order of magnitude, not the exact pool size."""
    peak = 0
    for op in info.ops:
        live = 0
        for index in [*op.inputs, *op.outputs]:
            tensor = info.tensor(index) if index >= 0 else None
            if tensor is not None and not tensor.is_constant:
                live += _count(tensor.shape) * _DTYPE_BYTES.get(tensor.dtype, 4)
        peak = max(peak, live)
    return peak


def _count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n
