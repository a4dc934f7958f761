"""Where each TFLite op of a model runs on a K210 once nncase compiles it.

The rules restate nncase's own K210 passes (v1.9.0: modules/k210/src/transforms/k210/*.cpp and
kpu_utils.h, src/transforms/neutral/{matmul_to_conv2d,pad_conv,add_to_conv2d}.cpp); the
"measured" failures were found by compiling one-op models with nncase 1.9 on this machine and
are re-checked by tests/test_lint_tables.py. Pure Python over a TFLiteInfo: no TensorFlow, no nncase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .optables import NNCASE19_SCHEMA_LAST_OPCODE, CompilerTable
from .tflite_reader import OpInfo, TensorInfo, TFLiteInfo

# KPU limits (kpu_utils.h is_supported_in_shape / is_supported_out_shape / is_supported_filter).
KPU_MIN_HW = 4
KPU_MAX_H = 256
KPU_MAX_W = 512
KPU_MAX_C = 1024
KPU_FILTERS = (1, 3)
KPU_RAM_BYTES = 2 * 1024 * 1024


class Placement(str, Enum):
    KPU = "kpu"  # fully accelerated
    KPU_PARTIAL = "kpu-partial"  # lowered onto the KPU with extra pad/crop/slice/concat ops
    CPU = "cpu"
    UNSUPPORTED = "unsupported"


NEEDS_PTQ = "KPU code needs PTQ: compile with --quant uint8"

CONV_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})
POOL_OPS = frozenset({"MAX_POOL_2D", "AVERAGE_POOL_2D"})
# Ops that could run on the KPU; placed on the CPU they count as "CPU fallbacks" (--strict).
KPU_CAPABLE = CONV_OPS | {"FULLY_CONNECTED", "TRANSPOSE_CONV"}
# Elementwise activations nncase folds into a KPU conv's 16-segment piecewise-linear table.
FUSABLE_ACTIVATIONS = frozenset({"RELU", "RELU6", "LEAKY_RELU", "LOGISTIC", "TANH", "HARD_SWISH"})
# Elementwise unary ops nncase merges with a following binary op into one CPU "fused unary". Not
# ReLU/ReLU6/LeakyReLU/hard_swish: nncase imports those as clamp/binary ops, and an Add after a CPU ReLU
# is still lowered to the KPU (measured on MediaPipe's BlazeFace: all 16 residual Adds are KPU convs).
ELEMENTWISE_UNARY = frozenset(
    {"ABS", "CEIL", "COS", "EXP", "FLOOR", "LOG", "NEG", "ROUND", "RSQRT", "SIN", "SQRT", "SQUARE", "TANH",
     "LOGISTIC"}
)
# Ops a following clamp (RELU6) folds into (fuse_clamp.cpp: conv2d, conv2d_transpose, binary).
CLAMP_FUSING_OPS = CONV_OPS | {"TRANSPOSE_CONV", "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "POW", "FLOOR_DIV"}
RESOURCE_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"})
QUANTISATION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})

# (filter, stride) -> name of the KPU pool (kpu_utils.h get_filter_type).
KPU_POOLS = {(2, 2): "2x2/s2", (2, 1): "2x2/s1", (4, 4): "4x4/s4"}

# How to get rid of an op nncase cannot import.
UNSUPPORTED_FIXES = {
    "ELU": "use ReLU or LeakyReLU",
    "GELU": "use ReLU, ReLU6 or hard_swish",
    "SELECT": "comes from SELU, Embedding or tf.where: use ReLU/LeakyReLU, or do the lookup on the host",
    "SELECT_V2": "comes from tf.where: replace it by arithmetic (mask * a + (1 - mask) * b)",
    "WHILE": "a recurrent layer (LSTM/GRU/RNN) became a loop: the K210 compilers cannot run RNNs; "
    "use Conv1D or Dense over a fixed time window",
    "UNPACK": "an unrolled RNN or tf.unstack: use Conv1D/Dense over a fixed window, or tf.split",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "use Conv1D or Dense over a fixed time window",
    "CONV_3D": "fold the depth axis into channels and use Conv2D",
    "CONV_3D_TRANSPOSE": "fold the depth axis into channels and use Conv2D",
    "RELU_N1_TO_1": "clip with tf.minimum/tf.maximum (MINIMUM/MAXIMUM import)",
    "SPLIT_V": "use equal splits (SPLIT)",
    "RANDOM_UNIFORM": "generate noise on the host",
    "HARD_SIGMOID": "use LOGISTIC or ReLU6(x + 3) / 6",
    "DEPTH_TO_SPACE": "it only moves values: end the model before it and rearrange that output on the host "
    "(numpy reshape + transpose), or in the source model upsample with UpSampling2D + a 3x3 Conv2D",
    "SPACE_TO_DEPTH": "it only moves values: do it on the host before the model's input (numpy reshape + "
    "transpose), or downsample with a stride-2 Conv2D in the source model",
}


# MediaPipe's own TFLite custom ops (its selfie segmentation and hair models ship them).
CUSTOM_FIXES = {
    "Convolution2DTransposeBias": "MediaPipe's transposed conv with bias: in the source model use UpSampling2D + a "
    "3x3 Conv2D (nncase 1.9 fails on a stride-2 TRANSPOSE_CONV too)",
    "MaxPoolingWithArgmax2D": "MediaPipe's pool with argmax: use MaxPooling2D and UpSampling2D in the source model",
    "MaxUnpooling2D": "MediaPipe's unpooling: use UpSampling2D in the source model",
}


@dataclass
class OpPlacement:
    index: int
    name: str
    op: str
    placement: Placement
    reason: str
    fix: str | None = None
    kpu_bytes: int = 0  # KPU RAM for this layer's input + output feature maps (uint8, KPU layout)
    lowered_convs: int = 0  # Add/PReLU: the convs nncase lowers it to (KPUConv2D on the KPU, Conv2D on the CPU)

    @property
    def cpu_fallback(self) -> bool:
        return self.op in KPU_CAPABLE and self.placement is Placement.CPU


@dataclass
class _KpuConv:
    """A conv the KPU runs; later activations and pools may fuse into it."""

    placement: OpPlacement
    depthwise: bool
    pool_slot_free: bool = True
    in_bytes: int = 0  # KPU RAM of the conv's (padded) input map
    out_channels: int = 0


@dataclass
class _Context:
    info: TFLiteInfo
    compiler: CompilerTable
    ptq: bool
    producers: dict[int, OpInfo] = field(default_factory=dict)
    consumers: dict[int, list[OpInfo]] = field(default_factory=dict)
    kpu_tails: dict[int, _KpuConv] = field(default_factory=dict)  # tensor -> KPU conv it comes out of
    cpu_unary_outputs: set[int] = field(default_factory=set)

    def tensor(self, op: OpInfo, position: int, outputs: bool = False) -> TensorInfo | None:
        indices = op.outputs if outputs else op.inputs
        if position >= len(indices) or indices[position] < 0:
            return None
        return self.info.tensor(indices[position])

    def single_consumer(self, tensor_index: int) -> bool:
        return len(self.consumers.get(tensor_index, [])) == 1 and tensor_index not in {
            t.index for t in self.info.outputs
        }


def place_ops(info: TFLiteInfo, compiler: CompilerTable, quant: str) -> list[OpPlacement]:
    """Placement of every op, in execution order. `quant` is "uint8" (PTQ) or "float"."""
    ctx = _Context(info, compiler, ptq=quant == "uint8")
    for op in info.ops:
        for t in op.outputs:
            ctx.producers[t] = op
        for t in op.inputs:
            if t >= 0:
                ctx.consumers.setdefault(t, []).append(op)
    return [_place(ctx, op) for op in info.ops]


def op_display_name(info: TFLiteInfo, op: OpInfo) -> str:
    """A short, readable name: the first part of the op's first output tensor name."""
    tensor = info.tensor(op.outputs[0]) if op.outputs else None
    name = (tensor.name if tensor else "").split(";")[0]
    parts = [p for p in name.split("/") if p]
    if len(parts) > 2:
        parts = parts[-2:]
    return "/".join(parts) or f"op{op.index}"


def _place(ctx: _Context, op: OpInfo) -> OpPlacement:
    name = op_display_name(ctx.info, op)
    result = _importability(ctx, op, name) or _measured_failure(ctx, op, name)
    if result is None:
        result = _kpu_rule(ctx, op, name) if ctx.ptq else _float_rule(op, name)
    if result.placement is Placement.CPU and op.opcode in ELEMENTWISE_UNARY and op.outputs:
        ctx.cpu_unary_outputs.add(op.outputs[0])
    return result


# --- can the compiler import it at all ---------------------------------------------------------


def _importability(ctx: _Context, op: OpInfo, name: str) -> OpPlacement | None:
    table = ctx.compiler
    opcode = op.opcode
    if opcode.startswith("CUSTOM:"):
        code = opcode.split(":", 1)[1]
        if code in table.custom_codes:
            return None
        message = table.unsupported_custom.format(code=code)
        if code.startswith("Flex"):
            reason = f"needs TF Flex ops ({code}), which nncase cannot import: '{message}'"
            fix = "build the model from TFLite builtin ops only (no SELECT_TF_OPS)"
        else:
            reason = f"custom op {code}: '{message}'"
            fix = CUSTOM_FIXES.get(code, "replace the custom op with builtin layers")
        return OpPlacement(op.index, name, opcode, Placement.UNSUPPORTED, reason, fix)
    if opcode in table.tflite_ops:
        return None
    if opcode in RESOURCE_OPS:
        reason = (f"resource variable op left in the graph (weights not frozen): "
                  f"'{table.unsupported_tflite.format(op=opcode)}'")
        fix = ("freeze the variables before converting (TFLiteConverter.from_keras_model, or "
               "convert_variables_to_constants_v2 on the concrete function)")
        return OpPlacement(op.index, name, opcode, Placement.UNSUPPORTED, reason, fix)
    message = table.unsupported_tflite.format(op=_name_in_message(table, opcode))
    reason = f"{table.title} cannot import {opcode}: '{message}'"
    if table.key == "nncase1.9" and _opcode_number(opcode) > NNCASE19_SCHEMA_LAST_OPCODE:
        reason += f" (blank name: {opcode} is newer than nncase's TFLite schema)"
    return OpPlacement(op.index, name, opcode, Placement.UNSUPPORTED, reason, UNSUPPORTED_FIXES.get(opcode))


def _name_in_message(table: CompilerTable, opcode: str) -> str:
    if table.key == "nncase1.9" and _opcode_number(opcode) > NNCASE19_SCHEMA_LAST_OPCODE:
        return ""
    return opcode


def _opcode_number(opcode: str) -> int:
    import tflite

    value = getattr(tflite.BuiltinOperator, opcode, None)
    if isinstance(value, int):
        return value
    if opcode.startswith("BUILTIN_"):
        return int(opcode.split("_", 1)[1])
    return -1


# --- ops nncase 1.9 imports but then fails on (measured here) ---------------------------------


def _measured_failure(ctx: _Context, op: OpInfo, name: str) -> OpPlacement | None:
    if ctx.compiler.key != "nncase1.9":
        return None
    opcode = op.opcode

    def refuse(reason: str, fix: str | None) -> OpPlacement:
        return OpPlacement(op.index, name, opcode, Placement.UNSUPPORTED, reason, fix)

    if opcode == "RELU6" and not _clamp_fuses(ctx, op):
        return refuse(
            "a ReLU6 (clamp) that nncase cannot fold into a conv or binary op before it has no CPU kernel in "
            "nncase 1.9: 'Emitter for ...[Clamp] is not found in module stackvm'",
            "put ReLU6 right after a Conv2D (or use Dense/Conv2D(activation='relu6') so the converter fuses it), "
            "or use ReLU",
        )
    if opcode == "DEPTHWISE_CONV_2D":
        multiplier = op.options.get("depth_multiplier", 1)
        in_tensor = ctx.tensor(op, 0)
        if multiplier != 1 and in_tensor is not None and in_tensor.shape[-1] != 1:
            return refuse(
                f"depth_multiplier {multiplier}: 'DepthwiseConv2d ... with depth_multiplier {multiplier} is not "
                "supported'",
                "use depth_multiplier 1 followed by a 1x1 Conv2D",
            )
    if opcode == "TRANSPOSE_CONV":
        problem = _transpose_conv_problem(ctx, op)
        if problem:
            return refuse(problem, "use UpSampling2D followed by a 3x3 Conv2D")
    if opcode == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] >= 0:
        shape_tensor = ctx.info.tensor(op.inputs[1])
        computed = shape_tensor is not None and not shape_tensor.is_constant and op.inputs[1] in ctx.producers
        if computed and _unresolved_reshape(ctx, op):
            return refuse(
                "the new shape is computed at run time (a dynamic-batch Flatten: SHAPE -> STRIDED_SLICE -> "
                "PACK -> RESHAPE): nncase 1.9 fails with 'Invalid slice begin 0, while dim is 0'",
                "convert with the batch fixed to 1 (k210 convert / k210 compile do this); it folds the chain",
            )
    if ctx.ptq and opcode == "FLOOR_MOD":
        return refuse("with PTQ nncase 1.9 fails: 'Unsupported binary op: binary_floor_mod'",
                      "compile with --quant float, or compute the modulo on the host")
    if ctx.ptq and opcode == "ONE_HOT":
        return refuse("with PTQ nncase 1.9 crashes (SIGSEGV) while calibrating ONE_HOT",
                      "compile with --quant float, or one-hot encode on the host")
    return None


def _unresolved_reshape(ctx: _Context, op: OpInfo) -> bool:
    """A run-time RESHAPE (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE) that nncase 1.9 cannot resolve.

    Keras' Flatten through TFLiteConverter.from_keras_model leaves the chain with a dynamic batch but a
    consistent static `shape` ([1, 784] for 1x28x28x1): nncase takes that shape and compiles it (measured).
    It fails ('Invalid slice begin 0') only when the output's static shape is not a real shape of the
    input: a dynamic dimension besides the batch, or an element count that differs from the input's."""
    data, out = ctx.tensor(op, 0), ctx.tensor(op, 0, outputs=True)
    if data is None or out is None or not out.shape:
        return True
    if out.signature is not None and any(d < 0 for d in out.signature[1:]):
        return True
    return _elements(out.shape) != _elements(data.shape)


def _elements(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _clamp_fuses(ctx: _Context, op: OpInfo) -> bool:
    """nncase 1.9 folds a clamp only into a conv2d, a transposed conv or a binary op right before it
    (fuse_clamp.cpp); after anything else (FULLY_CONNECTED, MEAN, CONCATENATION, PAD, ...) it stays alone."""
    producer = ctx.producers.get(op.inputs[0]) if op.inputs else None
    return producer is not None and producer.opcode in CLAMP_FUSING_OPS


def _transpose_conv_problem(ctx: _Context, op: OpInfo) -> str | None:
    """nncase 1.9 compiles a transposed conv only when its K210 pass lowers it to pad + conv."""
    weights = ctx.tensor(op, 1)
    data = ctx.tensor(op, 2)
    stride = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
    if stride != (1, 1):
        return f"stride {stride[0]}x{stride[1]}: nncase 1.9 fails with 'Shapes must be same'"
    if op.options.get("padding") != "SAME":
        return "VALID padding: nncase 1.9 fails with 'Shapes must be same'"
    if weights is not None and len(weights.shape) == 4:
        kh, kw = weights.shape[1], weights.shape[2]
        if kh != kw or kh not in KPU_FILTERS:
            return (f"{kh}x{kw} kernel: only 1x1/3x3 transposed convs are lowered; nncase 1.9 has no CPU kernel "
                    "('Emitter for ...[Conv2DTranspose] is not found in module stackvm')")
    if data is not None and len(data.shape) == 4:
        limit = shape_limit(data.shape[1], data.shape[2], data.shape[3])
        if data.shape[1] < KPU_MIN_HW or data.shape[2] < KPU_MIN_HW:
            limit = f"{data.shape[1]}x{data.shape[2]} map smaller than {KPU_MIN_HW}x{KPU_MIN_HW}"  # measured: 3x3 fails
        out = ctx.tensor(op, 0, outputs=True)
        if not limit and out is not None and out.shape and out.shape[-1] > KPU_MAX_C:
            limit = f"{out.shape[-1]} output channels > {KPU_MAX_C}"  # measured: 1025 fails, 1024 compiles
        if limit:
            return (f"{limit}: not lowered, and nncase 1.9 has no CPU kernel for transposed convs ('Emitter for "
                    "...[Conv2DTranspose] is not found in module stackvm')")
    return None


# --- float kmodels: everything on the CPU ------------------------------------------------------


def _float_rule(op: OpInfo, name: str) -> OpPlacement:
    if op.opcode in KPU_CAPABLE or op.opcode in POOL_OPS or op.opcode in FUSABLE_ACTIVATIONS:
        return OpPlacement(op.index, name, op.opcode, Placement.CPU, NEEDS_PTQ)
    return _cpu(op, name)


def _cpu(op: OpInfo, name: str, reason: str | None = None, fix: str | None = None) -> OpPlacement:
    return OpPlacement(op.index, name, op.opcode, Placement.CPU, reason or _cpu_reason(op.opcode), fix)


def _cpu_reason(opcode: str) -> str:
    if opcode in QUANTISATION_OPS:
        return "TFLite quantisation op (see problems)"
    if opcode == "FAKE_QUANT":
        return "a no-op in nncase (imported as a bitcast)"
    if opcode in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        return "shape change: a CPU copy or a no-op"
    if opcode == "SOFTMAX":
        return "softmax runs on the CPU (the KPU does only conv, pool and activation)"
    if opcode == "BATCH_MATMUL":
        return "batched MatMul: only a 2-D MatMul with constant weights is lowered to the KPU"
    return "runs on the RISC-V CPU (the KPU does only conv, pool and activation)"


# --- uint8 PTQ: the KPU rules ------------------------------------------------------------------


def _kpu_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    opcode = op.opcode
    if opcode in CONV_OPS:
        return _conv_rule(ctx, op, name)
    if opcode == "FULLY_CONNECTED":
        return _dense_rule(ctx, op, name)
    if opcode in FUSABLE_ACTIVATIONS:
        return _activation_rule(ctx, op, name)
    if opcode in POOL_OPS:
        return _pool_rule(ctx, op, name)
    if opcode == "ADD":
        return _add_rule(ctx, op, name)
    if opcode == "TRANSPOSE_CONV":
        return _transpose_conv_rule(ctx, op, name)
    if opcode == "PRELU":
        return _prelu_rule(ctx, op, name)
    return _cpu(op, name)


def _conv_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    data, weights, out = ctx.tensor(op, 0), ctx.tensor(op, 1), ctx.tensor(op, 0, outputs=True)
    if data is None or weights is None or out is None or len(data.shape) != 4 or len(weights.shape) != 4:
        return _cpu(op, name, "conv with unexpected tensor ranks: left on the CPU")
    _, h, w, c_in = data.shape
    c_out = out.shape[-1]
    depthwise = op.opcode == "DEPTHWISE_CONV_2D" and c_in != 1
    kh, kw = weights.shape[1], weights.shape[2]
    if not weights.is_constant:
        return _cpu(op, name, "weights computed at run time: only constant-weight convs go to the KPU")
    if kh != kw or kh not in KPU_FILTERS:
        return _cpu(op, name, *kernel_advice(kh, kw))
    dilation = (op.options.get("dilation_h", 1), op.options.get("dilation_w", 1))
    limit = shape_limit(h, w, c_in) or (f"{c_out} output channels > {KPU_MAX_C}" if c_out > KPU_MAX_C else None)
    if limit:
        return _cpu(op, name, f"{limit} (KPU limit)", _limit_fix(limit))
    stride = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
    kind = "depthwise " if depthwise else ""
    padded_h, padded_w = max(h, KPU_MIN_HW), max(w, KPU_MIN_HW)
    in_bytes = kpu_feature_map_bytes(padded_w, padded_h, c_in)
    out_h, out_w = max(h, KPU_MIN_HW), max(w, KPU_MIN_HW)  # the KPU computes at stride 1
    notes: list[str] = []
    placement = Placement.KPU
    pool_slot_free = True
    if h < KPU_MIN_HW or w < KPU_MIN_HW:
        placement = Placement.KPU_PARTIAL
        notes.append(f"{h}x{w} map is smaller than 4x4: nncase pads it to 4x4 and crops the result")
    if dilation != (1, 1):
        placement = Placement.KPU_PARTIAL
        pool_slot_free = False
        notes.append(f"dilation {dilation[0]}: lowered to space-to-batch + KPU conv + batch-to-space")
    if stride != (1, 1):
        pool_slot_free = False
        placement = Placement.KPU_PARTIAL
        if stride == (2, 2) and kh == 1 and not depthwise:
            # Measured with nncase 1.9: a 1x1 stride-2 conv stays inside the KPU call, no CPU op.
            placement = Placement.KPU
            out_h, out_w = (out_h + 1) // 2, (out_w + 1) // 2
            notes.append("stride 2: subsampled by the KPU's pool unit")
        elif stride == (2, 2) and not depthwise and out.shape[1] >= KPU_MIN_HW and out.shape[2] >= KPU_MIN_HW:
            # Measured with nncase 1.9: the KPU pads a 3x3 conv by 1 on every side, TF's stride-2 padding is
            # not that, so the stackvm pads and crops (Pad ops; between two KPU calls when inside a network).
            out_h, out_w = (out_h + 1) // 2, (out_w + 1) // 2
            notes.append("stride 2: nncase pads the map and crops the result on the CPU around a stride-1 KPU conv "
                         "subsampled by the KPU's pool unit (inside a network: download, dequantize, pad, "
                         "quantize, upload)")
        elif stride == (2, 2) and depthwise:
            # Measured (MobileNet): the KPU writes the full stride-1 map; the CPU subsamples it, as a Slice, or
            # between two KPU calls inside the dequantize -> pad -> quantize round trip (no Slice op then).
            notes.append("stride 2: a stride-1 KPU conv at full resolution; nncase subsamples it on the CPU "
                         "(download, dequantize, pad, quantize, upload before the next KPU layer)")
        else:
            notes.append(f"stride {stride[0]}: a stride-1 KPU conv + a strided slice on the CPU")
    kpu_bytes = in_bytes + kpu_feature_map_bytes(out_w, out_h, c_out)
    reason = f"{kind}{kh}x{kw} conv on the KPU" + ("; " + "; ".join(notes) if notes else "")
    result = OpPlacement(op.index, name, op.opcode, placement, reason, kpu_bytes=kpu_bytes)
    ctx.kpu_tails[op.outputs[0]] = _KpuConv(result, depthwise, pool_slot_free, in_bytes, c_out)
    return result


def kernel_advice(kh: int, kw: int) -> tuple[str, str]:
    reason = f"{kh}x{kw} kernel: the KPU does only 1x1 and 3x3"
    if kh == kw and kh > 3 and kh % 2 == 1:
        n = (kh - 1) // 2
        return reason, f"{_count_word(n)} 3x3 convs (same receptive field) keep it on the KPU"
    if kh != kw:
        return reason, "use a square 3x3 (or 1x1) kernel"
    return reason, "use 3x3 (or 1x1) kernels"


def _count_word(n: int) -> str:
    return {2: "two", 3: "three", 4: "four"}.get(n, str(n))


def shape_limit(h: int, w: int, c: int) -> str | None:
    if h > KPU_MAX_H:
        return f"height {h} > {KPU_MAX_H}"
    if w > KPU_MAX_W:
        return f"width {w} > {KPU_MAX_W}"
    if c > KPU_MAX_C:
        return f"{c} input channels > {KPU_MAX_C}"
    return None


def _limit_fix(limit: str) -> str:
    if limit.startswith(("height", "width")):
        return f"resize the input to at most {KPU_MAX_W}x{KPU_MAX_H} (WxH), or downsample before this layer"
    if "output channels" in limit:
        return (f"give this layer at most {KPU_MAX_C} filters, or split it into convs of <= {KPU_MAX_C} filters "
                "each and concatenate their outputs")
    return f"keep the channels entering this layer at or below {KPU_MAX_C} (e.g. a 1x1 conv to reduce them first)"


def _dense_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    weights = ctx.tensor(op, 1)
    if weights is None or len(weights.shape) != 2:
        return _cpu(op, name, "Dense with unexpected weights: left on the CPU")
    if not weights.is_constant:
        return _cpu(op, name, "MatMul with run-time weights: only constant-weight MatMul lowers to the KPU")
    out_features, in_features = weights.shape
    if in_features > KPU_MAX_C:
        return _cpu(op, name, f"{in_features} input features > {KPU_MAX_C} KPU channels: stays on the CPU "
                           "(as a Conv2D after nncase's matmul_to_conv2d)",
                    f"shrink the features entering this Dense to <= {KPU_MAX_C} (more pooling or fewer channels "
                    "before Flatten)")
    if out_features > KPU_MAX_C:
        return _cpu(op, name, f"{out_features} output features > {KPU_MAX_C} KPU channels: stays on the CPU "
                           "(as a Conv2D after nncase's matmul_to_conv2d)",
                    f"use at most {KPU_MAX_C} units")
    kpu_bytes = kpu_feature_map_bytes(4, 4, in_features) + kpu_feature_map_bytes(4, 4, out_features)
    activation = op.options.get("activation", "NONE")
    fused = f", fused {activation}" if activation not in ("NONE", None) else ""
    return OpPlacement(op.index, name, op.opcode, Placement.KPU_PARTIAL,
                       f"lowered to a 1x1 KPU conv ({in_features}->{out_features}{fused}) on a map padded to "
                       "4x4: pad + conv + crop", kpu_bytes=kpu_bytes)


def _activation_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    source = op.inputs[0] if op.inputs else -1
    conv = ctx.kpu_tails.get(source)
    if conv is not None and ctx.single_consumer(source):
        ctx.kpu_tails[op.outputs[0]] = conv
        return OpPlacement(op.index, name, op.opcode, Placement.KPU,
                           f"fused into the KPU conv {conv.placement.name}'s piecewise-linear activation")
    producer = ctx.producers.get(source)
    if producer is not None and producer.opcode == "FULLY_CONNECTED":
        return _cpu(op, name, "after a Dense the activation stays on the CPU; fused into the Dense itself "
                              "(Dense(activation=...)) ReLU/ReLU6/tanh run on the KPU")
    return _cpu(op, name, "not directly after a KPU conv, so it cannot fuse: runs on the CPU")


def _pool_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    source = op.inputs[0] if op.inputs else -1
    data = ctx.info.tensor(source)
    filt = (op.options.get("filter_h"), op.options.get("filter_w"))
    stride = (op.options.get("stride_h"), op.options.get("stride_w"))
    size = f"{filt[0]}x{filt[1]}/s{stride[0]}" if stride[0] == stride[1] else f"{filt[0]}x{filt[1]}/s{stride}"
    kind = "max" if op.opcode == "MAX_POOL_2D" else "average"
    conv = ctx.kpu_tails.get(source)
    if conv is None or not ctx.single_consumer(source):
        return _cpu(op, name, f"{size} {kind} pool not directly after a KPU conv: runs on the CPU")
    if conv.depthwise:
        return _cpu(op, name, f"{size} {kind} pool after a depthwise conv: the KPU fuses pools only into "
                              "regular convs")
    if not conv.pool_slot_free:
        return _cpu(op, name, f"the KPU pool of {conv.placement.name} already does its stride-2 subsampling")
    if data is not None and len(data.shape) == 4 and tuple(filt) == tuple(data.shape[1:3]):
        return _cpu(op, name, f"global {filt[0]}x{filt[1]} {kind} pool (the whole map): a cheap reduction on the CPU")
    if filt[0] != filt[1] or stride[0] != stride[1] or (filt[0], stride[0]) not in KPU_POOLS:
        return _cpu(op, name, f"{size} {kind} pool: the KPU pools only 2x2/s2, 2x2/s1 and 4x4/s4",
                    "use a 2x2/s2 pool right after the conv")
    if data is None or len(data.shape) != 4 or shape_limit(data.shape[1], data.shape[2], data.shape[3]):
        return _cpu(op, name, f"{size} {kind} pool on a map outside the KPU limits")
    padding_problem = _pool_padding_problem(filt[0], stride[0], op.options.get("padding"), data.shape[1:3])
    if padding_problem:
        return _cpu(op, name, f"{size} {kind} pool: {padding_problem}")
    conv.pool_slot_free = False
    ctx.kpu_tails[op.outputs[0]] = conv
    out = ctx.tensor(op, 0, outputs=True)
    if out is not None and len(out.shape) == 4 and conv.in_bytes:
        # The KPU writes the pooled map back: that, not the conv's full-size output, takes KPU RAM.
        pooled = kpu_feature_map_bytes(max(out.shape[2], KPU_MIN_HW), max(out.shape[1], KPU_MIN_HW), conv.out_channels)
        conv.placement.kpu_bytes = conv.in_bytes + pooled
    return OpPlacement(op.index, name, op.opcode, Placement.KPU,
                       f"{size} {kind} pool fused into the KPU conv {conv.placement.name}")


def _pool_padding_problem(filt: int, stride: int, padding: str | None, hw: list[int]) -> str | None:
    """The KPU pools pad as their kind dictates; nncase fuses only when the model pads the same way."""
    if filt == 2 and stride == 1:
        return None if padding == "SAME" else "2x2/s1 fuses only with SAME padding"
    if padding == "VALID" or all(d % stride == 0 for d in hw):
        return None
    return f"SAME padding on a {hw[0]}x{hw[1]} map pads unevenly, which the KPU pool cannot"


def _add_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    a, b = ctx.tensor(op, 0), ctx.tensor(op, 1)
    if a is None or b is None or len(a.shape) != 4 or a.shape != b.shape:
        return _cpu(op, name, "Add with broadcasting or not 4-D: runs on the CPU")
    if ctx.compiler.key != "nncase1.9":
        return _cpu(op, name, f"{ctx.compiler.title} does not lower Add to the KPU")
    if any(t in ctx.cpu_unary_outputs for t in op.inputs):
        return _cpu(op, name, "nncase merges it with the elementwise op before it into one CPU op")
    _, h, w, c = a.shape
    limit = shape_limit(h, w, 2 * c)
    if limit or h < KPU_MIN_HW or w < KPU_MIN_HW:
        result = _cpu(op, name, f"Add of {h}x{w}x{c} maps: outside the KPU limits, so the concat + 1x1 conv nncase "
                                "lowers it to runs on the CPU")
        result.lowered_convs = 1
        return result
    kpu_bytes = kpu_feature_map_bytes(w, h, 2 * c) + kpu_feature_map_bytes(w, h, c)
    result = OpPlacement(op.index, name, op.opcode, Placement.KPU_PARTIAL,
                         "Add of two same-shape maps: lowered to concat + 1x1 KPU conv", kpu_bytes=kpu_bytes,
                         lowered_convs=1)
    # Its 1x1 conv takes a following ReLU into its activation table (measured: BlazeFace's residual
    # Add -> ReLU leaves no ReLU op on the CPU).
    ctx.kpu_tails[op.outputs[0]] = _KpuConv(result, depthwise=False, pool_slot_free=False)
    return result


def _prelu_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    """nncase imports PReLU as max(x,0) + slope*min(x,0); the final add of two same-shape maps is lowered
    like any Add (measured: a PReLU-only model gets a k210 module)."""
    fix = "use ReLU or LeakyReLU to keep the activation fused into the conv on the KPU"
    data = ctx.tensor(op, 0)
    no_fuse = "PReLU does not fuse into a KPU conv's activation table"
    if ctx.compiler.key != "nncase1.9" or data is None or len(data.shape) != 4:
        return _cpu(op, name, f"{no_fuse}: max/min/mul/add on the CPU", fix)
    _, h, w, c = data.shape
    if shape_limit(h, w, 2 * c) or h < KPU_MIN_HW or w < KPU_MIN_HW:
        result = _cpu(op, name, f"{no_fuse}: max/min/mul on the CPU, and its add (concat + 1x1 conv) too: the map "
                                "is outside the KPU limits", fix)
        result.lowered_convs = 1
        return result
    kpu_bytes = kpu_feature_map_bytes(w, h, 2 * c) + kpu_feature_map_bytes(w, h, c)
    _split_producer(ctx, op)
    return OpPlacement(op.index, name, op.opcode, Placement.KPU_PARTIAL,
                       f"{no_fuse}: nncase runs its max/min/mul on the CPU and lowers its add to concat + 1x1 KPU "
                       "conv", fix, kpu_bytes, lowered_convs=1)


def _split_producer(ctx: _Context, op: OpInfo) -> None:
    """A KPU conv (or lowered Add) whose output goes straight into a PReLU that nncase lowers to the KPU is
    emitted twice, once per half of the PReLU (measured: MediaPipe iris_landmark's conv -> PReLU and
    face_landmark's Add -> PReLU each give two KPUConv2D; after a stride-2 conv's CPU crop, one)."""
    tail = ctx.kpu_tails.get(op.inputs[0]) if op.inputs else None
    if tail is None or ctx.producers.get(op.inputs[0]) is None:
        return
    producer = tail.placement
    if producer.index != ctx.producers[op.inputs[0]].index:
        return  # an activation sits between them
    if producer.placement is Placement.KPU_PARTIAL and "stride 2" in producer.reason:
        return
    # Once per reader of its output: the PReLU's two halves, and any other op that reads it too (measured:
    # hand_recrop's depthwise conv and residual Adds that feed a PReLU and a max pool are emitted three times).
    others = len(ctx.consumers.get(op.inputs[0], [])) - 1
    producer.lowered_convs += 1 + others
    times = "twice" if not others else f"{2 + others} times"
    also = f", and once more for each of its {others} other reader{'s' if others != 1 else ''}" if others else ""
    producer.reason += f"; emitted {times} by nncase (the PReLU after it takes both halves from the KPU{also})"


def _transpose_conv_rule(ctx: _Context, op: OpInfo, name: str) -> OpPlacement:
    if ctx.compiler.key != "nncase1.9":
        return _cpu(op, name, f"transposed conv: not lowered to the KPU by {ctx.compiler.title}")
    data, out = ctx.tensor(op, 2), ctx.tensor(op, 0, outputs=True)
    kpu_bytes = 0
    if data is not None and out is not None and len(data.shape) == 4:
        _, h, w, c = data.shape
        kpu_bytes = kpu_feature_map_bytes(max(w, 4) + 2, max(h, 4) + 2, c) + kpu_feature_map_bytes(
            max(w, 4), max(h, 4), out.shape[-1])
    return OpPlacement(op.index, name, op.opcode, Placement.KPU_PARTIAL,
                       "stride-1 transposed conv: lowered to pad + KPU conv", kpu_bytes=kpu_bytes)


def kpu_feature_map_bytes(width: int, height: int, channels: int) -> int:
    """Bytes a uint8 feature map takes in KPU RAM (runtime_op_utility.h get_kpu_bytes: 64-byte rows,
    up to 4 channels share a row when the map is narrow)."""
    if width <= 16:
        groups, row_len = 4, 1
    elif width <= 32:
        groups, row_len = 2, 1
    else:
        groups, row_len = 1, (width + 63) // 64
    per_row = min(channels, groups)
    blocks = (channels + per_row - 1) // per_row
    return row_len * height * blocks * 64
