"""Will it fit: KPU RAM per layer, SRAM for weights + working memory, the MaixPy system heap."""

from __future__ import annotations

from k210.converters.kpu_rules import FUSABLE_ACTIVATIONS, KPU_RAM_BYTES, OpPlacement, Placement
from k210.converters.tflite_reader import TFLiteInfo
from k210.core.firmwares import SYSTEM_HEAP_BYTES

SRAM_BYTES = 6 * 1024 * 1024  # general-purpose SRAM: weights, code, heap
MAIXPY_HEAP_BYTES = SYSTEM_HEAP_BYTES  # system heap free on standard MaixPy builds (kpu.load mallocs the model)

_DTYPE_BYTES = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2, "int8": 1,
                "float64": 8}
_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


# Ops nncase turns into a bitcast: no buffer of their own.
_ALIAS_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "FAKE_QUANT"}
_NCHW_POOLS = {"MAX_POOL_2D", "AVERAGE_POOL_2D"}


def memory_summary(peak: OpPlacement | None, model: int, working: int, quant: str, io: int = 0) -> dict:
    """The report's memory section, in bytes, for any front end (TFLite, ONNX).

    total = model + working + io, like nncase's TOTAL = MODEL + .data + .input + .output."""
    return {
        "kpu_ram_bytes": KPU_RAM_BYTES,
        "kpu_peak_bytes": peak.kpu_bytes if peak else 0,
        "kpu_peak_layer": peak.name if peak else None,
        "model_bytes": model,
        "model_basis": "uint8 KPU weights, float32 elsewhere" if quant == "uint8" else "float32 weights",
        "working_bytes": working,
        "io_bytes": io,
        "total_bytes": model + working + io,
        "sram_bytes": SRAM_BYTES,
        "maixpy_heap_bytes": MAIXPY_HEAP_BYTES,
    }


def estimate_memory(info: TFLiteInfo, placements: list[OpPlacement], quant: str) -> dict:
    """Sizes in bytes, as nncase 1.9 lays the kmodel and its data pool out (see _constant_bytes and
    _working_bytes for what was measured)."""
    kpu_layers = [p for p in placements if p.kpu_bytes]
    peak = max(kpu_layers, key=lambda p: p.kpu_bytes, default=None)
    model = _constant_bytes(info, placements, quant)
    working, working_op = _working_bytes(info, placements, quant)
    heaviest = _heaviest_op(info, placements)
    return memory_summary(peak, model, working, quant, _io_bytes(info, quant)) | {
        "heaviest_op": heaviest, "working_peak_op": working_op}


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
        io = f" + input/output ~{memory['io_bytes'] / 2**20:.2f} MiB" if memory.get("io_bytes") else ""
        problems.append(
            f"model ~{memory['model_bytes'] / 2**20:.2f} MiB + working memory ~{memory['working_bytes'] / 2**20:.2f} "
            f"MiB{io} exceed the K210's 6 MiB SRAM (an estimate: `k210 lint --confirm` asks nncase)"
            f"{_memory_hint(memory)}"
        )
    elif memory["model_bytes"] > memory["maixpy_heap_bytes"]:
        notes.append(
            f"model ~{memory['model_bytes'] / 2**20:.2f} MiB is larger than the ~2 MiB system heap free on standard "
            "MaixPy builds (kpu.load mallocs the whole model): use a minimum build or the standalone C SDK"
        )
    return problems, notes


def _memory_hint(memory: dict) -> str:
    """Point at what overflows: the activations around one op, or the weights of one layer."""
    peak = memory.get("working_peak_op")
    if peak and memory["working_bytes"] >= memory["model_bytes"]:
        return (f"; most of it is working memory around {peak['name']} ({peak['op']}, "
                f"{peak['bytes'] / 2**20:.2f} MiB: {peak['why']}): lower the input resolution or the channels "
                "before it, or keep that step on the KPU")
    return _heaviest_hint(memory)


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


# What nncase 1.9 stores for every KPUConv2D it emits, beyond the uint8 weights (measured from the rdata
# of its k210 functions, dump_ir schedules, on ResNet-8, DS-CNN and MediaPipe's landmark models): the
# batch-norm segment of every output channel (a u64), the 144-byte activation table, and ~420 B of
# layer arguments, text and alignment.
_KPU_BN_BYTES_PER_CHANNEL = 8
_KPU_ACT_TABLE_BYTES = 144
_KPU_CONV_OVERHEAD_BYTES = 420
# nncase's stackvm text: ~150 B a runtime op (same models); with PTQ a CPU op becomes ~3 of them with
# its Dequantize/Quantize/Transpose, a KPU-partial op (a KPU call with a CPU pad, crop or concat) ~5.
_STACKVM_BYTES_PER_OP = 150
_STACKVM_BYTES_PER_PTQ_CPU_OP = 450
_STACKVM_BYTES_PER_KPU_PARTIAL_OP = 750


def _constant_bytes(info: TFLiteInfo, placements: list[OpPlacement], quant: str) -> int:
    """nncase's MODEL (the kmodel): the constants as nncase stores them plus what it adds for each op.

    On the KPU a weighted op stores uint8 weights once per KPUConv2D nncase emits for it (twice when a
    PReLU splits it), with a u64 batch-norm word per output channel in place of the float bias; an Add or
    PReLU lowered to concat + 1x1 conv brings that conv's weights (2k x k, k the map's channels or height:
    uint8 on the KPU, float32 when the conv stays on the CPU: measured, two such Adds are 2 x 128 KiB of
    iris_landmark's stackvm rdata)."""
    cpu_op_text = _STACKVM_BYTES_PER_PTQ_CPU_OP if quant == "uint8" else _STACKVM_BYTES_PER_OP
    by_index = {p.index: p for p in placements}
    on_kpu = {p.index for p in placements if p.placement in (Placement.KPU, Placement.KPU_PARTIAL)}
    kpu_weighted = _kpu_weighted(info, on_kpu)
    kpu_constants = {t for op in info.ops if op.index in kpu_weighted for t in op.inputs[1:] if t >= 0}
    nhwc = _nhwc_tensors(info, kpu_weighted)
    total = 0
    for tensor in info.tensors:
        if tensor.is_constant and tensor.index not in kpu_constants:
            # Weight-only int8 weights are dequantized when nncase imports them (measured on the
            # int8-weight DS-CNN: its CPU conv's weights are float32 in the stackvm rdata).
            per_item = 4 if tensor.dtype == "int8" else _DTYPE_BYTES.get(tensor.dtype, 4)
            total += _count(tensor.shape) * per_item
    for op in info.ops:
        placement = by_index.get(op.index)
        if placement is None or not op.outputs or op.opcode in _ALIAS_OPS:
            continue
        out = info.tensor(op.outputs[0])
        channels = int(out.shape[-1]) if out is not None and out.shape else 1
        if op.index in kpu_weighted:
            weights = info.tensor(op.inputs[1])
            total += (1 + placement.lowered_convs) * (_count(weights.shape) + _kpu_conv_tables(channels))
        elif placement.lowered_convs and op.index in on_kpu:
            side = _lowered_conv_side(info, op, nhwc)
            total += placement.lowered_convs * (2 * side * side + _kpu_conv_tables(side))
        elif placement.lowered_convs:
            # On the CPU nncase picks the axis by rules not restated here (measured both ways on 2x2 and
            # 3x3 maps after a max pool): the smaller side, so the estimate does not run high.
            side = min(out.shape[1], out.shape[3]) if out is not None and len(out.shape) == 4 else channels
            total += placement.lowered_convs * (2 * side + 1) * side * 4
        total += _STACKVM_BYTES_PER_KPU_PARTIAL_OP if placement.placement is Placement.KPU_PARTIAL else (
            cpu_op_text if op.index not in on_kpu else 0)
    return total


def _kpu_conv_tables(channels: int) -> int:
    """What a KPUConv2D stores beside its weights: batch-norm words, activation table, arguments."""
    return channels * _KPU_BN_BYTES_PER_CHANNEL + _KPU_ACT_TABLE_BYTES + _KPU_CONV_OVERHEAD_BYTES


def _kpu_weighted(info: TFLiteInfo, on_kpu: set[int]) -> set[int]:
    """Ops whose weights the KPU holds: each becomes a KPUConv2D with NCHW output."""
    return {op.index for op in info.ops if op.index in on_kpu and op.opcode in _WEIGHTED_OPS and len(op.inputs) > 1}


def _nhwc_tensors(info: TFLiteInfo, kpu_weighted: set[int]) -> set[int]:
    """Maps nncase keeps NHWC after moving its transposes: a PReLU's (its slope broadcasts over the last
    axis) and a Pad's, and what follows them up to the next KPU conv or pool, which work NCHW again
    (measured on iris_landmark: an Add after a max pool convs over channels, one after a PReLU over H)."""
    nhwc: set[int] = set()
    for op in info.ops:
        if op.index in kpu_weighted or op.opcode in _NCHW_POOLS:
            continue
        if op.opcode in ("PRELU", "PAD") or any(t in nhwc for t in op.inputs):
            nhwc.update(op.outputs)
    return nhwc


def _lowered_conv_side(info: TFLiteInfo, op, nhwc: set[int]) -> int:
    """The channels of the 1x1 conv an Add or PReLU becomes: the map's channels when its inputs are NCHW
    (from KPU convs), else its height (nncase concatenates NHWC maps along H and convs over that axis;
    measured: iris_landmark's 32x32x64 PReLU gets [32,64,1,1] weights, ResNet-8's 32x32x16 Add [16,32,1,1])."""
    shape = info.tensor(op.outputs[0]).shape
    if len(shape) != 4:
        return int(shape[-1]) if shape else 1
    data = [t for t in op.inputs if t >= 0 and not info.tensor(t).is_constant]
    from_kpu_convs = op.opcode == "ADD" and not any(t in nhwc for t in data)
    return int(shape[3]) if from_kpu_convs else int(shape[1])


def _io_bytes(info: TFLiteInfo, quant: str) -> int:
    """nncase's .input and .output pools: a uint8 input with PTQ (k210 compile's default), float32 outputs."""
    per_input = 1 if quant == "uint8" else 4
    return sum(_count(t.shape) * per_input for t in info.inputs) + sum(_count(t.shape) * 4 for t in info.outputs)


def _working_bytes(info: TFLiteInfo, placements: list[OpPlacement], quant: str) -> tuple[int, dict | None]:
    """Peak of the activations alive at one step of nncase's data pool, and the op where it peaks.

    Float kmodels: every op runs on the CPU, its inputs and outputs are alive together. With PTQ the
    feature maps between KPU layers stay in KPU RAM; the data pool holds what the CPU works on, and at a
    KPU/CPU boundary nncase keeps four buffers (measured on MobileNet: KPUDownload uint8 -> Dequantize
    float32 -> Pad float32 -> Quantize uint8 -> KPUUpload). A stride-2 KPU conv followed by another
    KPU layer gets the same round trip for its crop. A PReLU is a float32 round trip of its own, and
    inside a residual branch the Add's other input stays alive on top of each step (_held_residual_bytes;
    measured with dump_ir's schedules of ResNet-8 and MediaPipe's landmark models)."""
    by_index = {p.index: p for p in placements}
    on_kpu = {p.index for p in placements if p.placement in (Placement.KPU, Placement.KPU_PARTIAL)}
    producer = {t: op.index for op in info.ops for t in op.outputs}
    consumers: dict[int, set[int]] = {}
    for op in info.ops:
        for t in op.inputs:
            consumers.setdefault(t, set()).add(op.index)
    ptq = quant == "uint8"
    held = _held_residual_bytes(info, placements, producer, on_kpu) if ptq else {}
    nhwc = _nhwc_tensors(info, _kpu_weighted(info, on_kpu)) if ptq else set()
    peak, peak_op = 0, None
    for op in info.ops:
        if ptq and op.opcode == "PRELU" and op.index in on_kpu:
            live, why = _prelu_bytes(info, op, nhwc)
        elif ptq and op.index in on_kpu:
            live, why = _kpu_crop_bytes(info, op, by_index[op.index], consumers, on_kpu)
        elif ptq and op.opcode in _ALIAS_OPS:
            continue
        else:
            live, why = _cpu_step_bytes(info, op, ptq, producer, consumers, on_kpu)
        if live and op.index in held:
            live += held[op.index]
            why += ", while a residual branch's other input is held"
        if live > peak:
            placement = by_index.get(op.index)
            peak, peak_op = live, {"name": placement.name if placement else f"op{op.index}", "op": op.opcode,
                                   "bytes": live, "why": why}
    if ptq:
        live, why = _exit_bytes(info, producer, on_kpu)
        if live > peak:
            peak, peak_op = live, {"name": "model output", "op": "KPUDownload", "bytes": live, "why": why}
    return peak, peak_op


def _prelu_bytes(info: TFLiteInfo, op, nhwc: set[int]) -> tuple[int, str]:
    """A PReLU nncase lowers to max/min/mul on the CPU and an add (concat + 1x1 conv) on the KPU. Measured
    on MediaPipe's landmark models and a small Keras net (n = the map's elements): the float32 concat of
    both halves (8n), a half dequantized (4n) and the uint8 maps under them: 16n when the map is already
    NHWC (after a lowered Add or PReLU), 19n when a KPU conv's NCHW map is first transposed (4n more)."""
    out = info.tensor(op.outputs[0]) if op.outputs else None
    if out is None or not op.inputs:
        return 0, ""
    n = _count(out.shape)
    if op.inputs[0] in nhwc:
        return n * 16, "a PReLU's two halves in float32 and their concat for its KPU conv"
    return n * 19, "a PReLU's map dequantized, transposed to NHWC and split in float32 for its KPU conv"


def _held_residual_bytes(info: TFLiteInfo, placements: list[OpPlacement], producer: dict[int, int],
                         on_kpu: set[int]) -> dict[int, int]:
    """Bytes a residual Add keeps alive while one of its branches runs, by op index in that branch.

    nncase schedules depth first from the outputs, an op's first input before its second. When the
    Add's first input is the shortcut (as Keras' add([x, y]) builds it), its dequantized copy goes into
    the Add's float32 concat at once and the whole 8n-byte concat lives through the other branch
    (measured on ResNet-8 and face_landmark: the peak is that concat under a stride-2 conv's CPU pad).
    When the first input is the long branch, what the shortcut starts from waits as the uint8 map the
    KPU wrote (n bytes; float32, 4n, when the CPU made it)."""
    by_index = {p.index: p for p in placements}
    held: dict[int, int] = {}
    for op in info.ops:
        placement = by_index.get(op.index)
        if op.opcode != "ADD" or placement is None or not placement.lowered_convs or not op.outputs:
            continue
        data = [t for t in op.inputs[:2] if t >= 0 and not info.tensor(t).is_constant]
        if len(data) != 2:
            continue
        n = _count(info.tensor(op.outputs[0]).shape)
        first, second = (_ancestors(info, t, producer) for t in data)
        waiting = n if producer.get(data[1]) in on_kpu else 4 * n
        for index in second - first:
            held[index] = held.get(index, 0) + 8 * n
        for index in first - second:
            held[index] = held.get(index, 0) + waiting
    return held


def _ancestors(info: TFLiteInfo, tensor: int, producer: dict[int, int]) -> set[int]:
    """The ops `tensor` depends on, its own producer included."""
    found: set[int] = set()
    stack = [tensor]
    while stack:
        index = producer.get(stack.pop())
        if index is None or index in found:
            continue
        found.add(index)
        stack.extend(t for t in info.ops[index].inputs if t >= 0)
    return found


def _exit_bytes(info: TFLiteInfo, producer: dict[int, int], on_kpu: set[int]) -> tuple[int, str]:
    """A model output the KPU makes: its uint8 download and nncase's NCHW -> NHWC copy of it. When every op
    runs on the KPU the transposed input is still in the pool, and nncase's first-fit allocator puts the
    copy into the input's hole only if it fits (measured on 3x3 convs over 240x320x3, with and without pool)."""
    peak = 0
    all_kpu = all(op.index in on_kpu or op.opcode in _ALIAS_OPS for op in info.ops)
    n_in = sum(_count(t.shape) for t in info.inputs if len(t.shape) == 4)
    for tensor in info.outputs:
        if producer.get(tensor.index) not in on_kpu:
            continue
        n_out = _count(tensor.shape)
        copy = n_out if len(tensor.shape) == 4 else 0
        if all_kpu and n_in:
            peak = max(peak, n_in + n_out + (copy if copy > n_in else 0))
        else:
            peak = max(peak, n_out + copy)
    return peak, "the KPU's output downloaded and transposed (and the input still held)"


def _cpu_step_bytes(info: TFLiteInfo, op, ptq: bool, producer: dict[int, int], consumers: dict[int, set[int]],
                    on_kpu: set[int]) -> tuple[int, str]:
    live = 0
    boundary = False
    for index in op.inputs:
        tensor = info.tensor(index) if index >= 0 else None
        if tensor is None or tensor.is_constant:
            continue
        n = _count(tensor.shape)
        live += n * (4 if ptq else _DTYPE_BYTES.get(tensor.dtype, 4))
        if ptq and producer.get(index) in on_kpu:
            live += n  # the uint8 map downloaded from the KPU, before Dequantize
            boundary = True
    for index in op.outputs:
        tensor = info.tensor(index)
        if tensor is None:
            continue
        n = _count(tensor.shape)
        live += n * (4 if ptq else _DTYPE_BYTES.get(tensor.dtype, 4))
        if ptq and consumers.get(index, set()) & on_kpu:
            live += n  # Quantize's uint8 copy for KPUUpload
            boundary = True
    if boundary:
        return live, "uint8 and float32 copies at a KPU/CPU boundary"
    return live, "its inputs and outputs" + (" in float32 on the CPU" if ptq else "")


def _kpu_crop_bytes(info: TFLiteInfo, op, placement: OpPlacement, consumers: dict[int, set[int]],
                    on_kpu: set[int]) -> tuple[int, str]:
    """The CPU round trip after a stride-2 KPU conv. Measured on MobileNetV1 0.75 at 224 (nncase .data
    5 720 064 B = exactly this for the 112x112x48 stride-2 depthwise): the uint8 map the KPU wrote
    (full resolution for a depthwise, pool-subsampled for a plain conv), two float32 copies of it
    (Dequantize, Pad) and two uint8 maps at the output size (Quantize and its upload)."""
    if op.opcode == "FULLY_CONNECTED" and op.inputs:
        return _dense_pad_bytes(info, op, consumers, on_kpu)
    if op.opcode == "ADD" and op.outputs:
        return _add_concat_bytes(info, op)
    if placement.placement is not Placement.KPU_PARTIAL or "stride 2" not in placement.reason or not op.outputs \
            or not op.inputs:
        return 0, ""
    data, out = info.tensor(op.inputs[0]), info.tensor(op.outputs[0])
    if data is None or out is None or len(data.shape) != 4 or len(out.shape) != 4:
        return 0, ""
    n_out = _count(out.shape)
    if op.opcode == "CONV_2D":
        # A plain 3x3 stride-2 conv: nncase pads its input on the CPU (measured on ResNet-8: Dequantize ->
        # Pad -> Quantize before the KPU call): the uint8 input, float32 input and padded map, uint8 padded map.
        _, h, w, c = data.shape
        n_in, n_pad = h * w * c, (h + 1) * (w + 1) * c
        return n_in * 5 + n_pad * 5, "the CPU pad in front of a stride-2 KPU conv"
    n_kpu = _count(data.shape[:3]) * out.shape[3]
    if _next_real_consumers(info, op.outputs[0], consumers, on_kpu) & on_kpu:
        return n_kpu * 9 + n_out * 2, "the CPU crop after a stride-2 KPU conv, between two KPU calls"
    return n_kpu * 5 + n_out * 4, "the CPU slice after a stride-2 KPU conv"


def _add_concat_bytes(info: TFLiteInfo, op) -> tuple[int, str]:
    """An Add lowered to concat + 1x1 KPU conv: nncase downloads and dequantizes both inputs and quantizes
    their concatenation on the CPU (measured on ResNet-8's residual Adds)."""
    out = info.tensor(op.outputs[0])
    if out is None:
        return 0, ""
    n = _count(out.shape)
    # An input padded with channels on the CPU (BlazeFace's shortcut) is padded straight into the
    # concat: its float32 source is alive with it (measured on face_detection_front: 15n at add_1).
    padded_from = [o.inputs[0] for o in info.ops if o.opcode == "PAD" and o.outputs and o.outputs[0] in op.inputs
                   and o.inputs and o.inputs[0] >= 0]
    extra = sum(4 * _count(info.tensor(t).shape) for t in padded_from)
    return n * 12 + extra, "an Add's two inputs dequantized and concatenated on the CPU for its KPU conv"


def _dense_pad_bytes(info: TFLiteInfo, op, consumers: dict[int, set[int]], on_kpu: set[int]) -> tuple[int, str]:
    """A Dense on the KPU is a 1x1 conv on a map padded to 4x4; fed from the CPU, nncase pads the float32 input
    and quantizes the padded map (measured on a 784-64-10 MLP: .data = 4n + 64n + 16n bytes, n = 784)."""
    data = info.tensor(op.inputs[0])
    if data is None:
        return 0, ""
    fed_by_cpu = not any(op.inputs[0] in o.outputs and o.index in on_kpu for o in info.ops)
    if not fed_by_cpu:
        return 0, ""
    n = _count(data.shape)
    return n * 84, "a Dense's input padded to 4x4 on the CPU for its KPU conv"


def _next_real_consumers(info: TFLiteInfo, tensor: int, consumers: dict[int, set[int]],
                         on_kpu: set[int]) -> set[int]:
    """Consumers of a tensor, looking through the activations fused into the KPU conv."""
    found = set(consumers.get(tensor, set()))
    for _ in range(4):
        fused = {i for i in found if i in on_kpu and info.ops[i].opcode in FUSABLE_ACTIVATIONS}
        if not fused:
            break
        found = (found - fused).union(*(consumers.get(t, set()) for i in fused for t in info.ops[i].outputs))
    return found


def _count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n
