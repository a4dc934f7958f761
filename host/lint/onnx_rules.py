"""ONNX nodes that nncase 1.9 imports by name but then refuses or crashes on (the K210 target, uint8 PTQ).

Each rule restates a failure measured by compiling onnx's own single-op node tests with nncase 1.9
(benchmarks/onnx_single_ops.py; the README's ONNX table) and quotes nncase's message. A rule fires
only on the pattern that failed there; the graphs of the same op that compiled stay unflagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# nncase's messages, as it prints them (node names elided).
NOT_CONSTANT = "Can't pull input data for <{name}> : only constant initialization is supported"
BAD_OPTIONAL = "bad optional access"
SEGFAULT = "nncase 1.9 crashes (SIGSEGV)"
SHAPES = "Shapes must be same"
# nncase fuses a clamp only into one of these before it (fuse_clamp.cpp); alone it has no CPU kernel.
_CLAMP_FUSES_INTO = frozenset({"Conv", "ConvTranspose", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"})
_REDUCTIONS = frozenset({"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                         "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare"})
# Inputs after the first that nncase reads as constants: left as graph inputs, the import fails.
_CONSTANT_INPUTS = {"Reshape": NOT_CONSTANT, "Resize": NOT_CONSTANT, "Pad": NOT_CONSTANT, "Slice": NOT_CONSTANT,
                    "Tile": NOT_CONSTANT, "Expand": NOT_CONSTANT, "TopK": NOT_CONSTANT,
                    "InstanceNormalization": BAD_OPTIONAL, "Unsqueeze": BAD_OPTIONAL, "PRelu": SEGFAULT,
                    "Gather": SEGFAULT}
# Optional outputs nncase never produces: a graph that uses one fails to import.
_EXTRA_OUTPUTS = {"Dropout": "mask", "LayerNormalization": "Mean/InvStdDev", "MaxPool": "argmax Indices"}
_UNSIGNED_WIDE = {12: "UINT32", 13: "UINT64"}  # TensorProto data types nncase 1.9 has no type for


@dataclass
class OnnxContext:
    """What the rules look up: constant values, graph inputs, inferred shapes, producers, the opset."""

    constants: dict[str, np.ndarray]
    graph_inputs: set[str]
    shapes: dict[str, list[int | None]]
    producers: dict[str, object] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    opset: int = 13

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        if shape is None and name in self.constants:
            return self.constants[name].ndim
        return None if shape is None else len(shape)

    def shape(self, name: str) -> list[int | None] | None:
        if name in self.constants:
            return list(self.constants[name].shape)
        return self.shapes.get(name)


def attr(node, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            from onnx import helper

            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def has_attr(node, name: str) -> bool:
    return any(a.name == name for a in node.attribute)


def refusal(node, ctx: OnnxContext, quant: str) -> tuple[str, str | None] | None:
    """(nncase's reason, a fix) when nncase 1.9 fails on this node, else None."""
    op = node.op_type
    live = [name for name in list(node.input)[1:] if name and name in ctx.graph_inputs]
    if op in _CONSTANT_INPUTS and live:
        message = _CONSTANT_INPUTS[op].format(name=live[0])
        return (f"its input '{live[0]}' is a graph input, not a constant: '{message}'",
                "export with that input as a constant (an initializer), as exporters write weights and shapes")
    if op in _EXTRA_OUTPUTS and len([o for o in node.output if o]) > 1:
        missing = [o for o in list(node.output)[1:] if o][0]
        return (f"its {_EXTRA_OUTPUTS[op]} output is used, which nncase does not produce: 'Cannot find associated "
                f"output node, graph input or initializer for input {missing}'",
                "export without that output (inference mode)")
    wide = [name for name in node.input if ctx.types.get(name) in _UNSIGNED_WIDE]
    if wide:
        return f"Data type \"{_UNSIGNED_WIDE[ctx.types[wide[0]]]}\" not supported", "use int32 or float32"
    check = _CHECKS.get(op)
    return check(node, ctx, quant) if check else None


def _clip(node, ctx: OnnxContext, quant: str):
    producer = ctx.producers.get(node.input[0]) if node.input else None
    if producer is not None and producer.op_type in _CLAMP_FUSES_INTO:
        return None
    return ("a Clip that nncase cannot fold into a conv or binary op before it has no CPU kernel: 'Emitter for "
            "Clamp is not found in module stackvm'", "put Clip right after a Conv, or use Relu")


def _conv_transpose(node, ctx: OnnxContext, quant: str):
    """Every ONNX ConvTranspose measured fails: the shapes TFLite's pass lowers to pad + KPU conv (stride 1,
    same size, 1x1/3x3) stop at the importer's shape check, the rest at the missing CPU kernel."""
    weights = ctx.shape(node.input[1]) if len(node.input) > 1 else None
    kernel = attr(node, "kernel_shape") or (weights[2:] if weights else [])
    strides = attr(node, "strides") or [1] * len(kernel)
    if len(kernel) == 2 and kernel[0] == kernel[1] and kernel[0] in (1, 3) and list(strides) == [1, 1]:
        return ("'Invalid conv2d transpose shape' (nncase 1.9's ONNX importer; other shapes have no CPU kernel "
                "either)", "use Resize (nearest) followed by a 3x3 Conv")
    return ("nncase 1.9 has no CPU kernel for it: 'Emitter for Conv2DTranspose is not found in module stackvm'",
            "use Resize (nearest) followed by a 3x3 Conv")


def _pool(node, ctx: OnnxContext, quant: str):
    rank = ctx.rank(node.input[0])
    if rank is not None and rank != 4:
        message = ("Image with 4-dimensional shape is expected on the input of pooling operators" if rank < 4
                   else SHAPES)
        return f"a {rank - 2}-D pool: '{message}'", "use a 2-D pool on an NCHW map"
    if any(d != 1 for d in attr(node, "dilations") or []):
        return f"a dilated pool: '{SHAPES}'", "use dilations 1"
    if attr(node, "ceil_mode", 0) and _ceil_changes_size(node, ctx.shape(node.input[0])):
        return f"ceil_mode=1 changes the output size: '{SHAPES}'", "export with ceil_mode=0 (pad the input instead)"
    return None


def _ceil_changes_size(node, shape: list[int | None] | None) -> bool:
    """Whether ceil_mode gives a larger map than floor (ONNX drops a last window that starts in the padding)."""
    kernel = attr(node, "kernel_shape") or []
    if shape is None or len(shape) != 4 or None in shape[2:] or len(kernel) != 2:
        return True
    strides = attr(node, "strides") or [1, 1]
    pads = attr(node, "pads") or [0, 0, 0, 0]
    for axis in range(2):
        span = shape[2 + axis] + pads[axis] + pads[axis + 2] - kernel[axis]
        floor_size = span // strides[axis] + 1
        ceil_size = math.ceil(span / strides[axis]) + 1
        if (ceil_size - 1) * strides[axis] >= shape[2 + axis] + pads[axis]:
            ceil_size -= 1
        if ceil_size != floor_size:
            return True
    return False


def _flatten(node, ctx: OnnxContext, quant: str):
    axis = attr(node, "axis", 1)
    rank = ctx.rank(node.input[0])
    if rank is not None and axis < 0:
        axis += rank
    if axis != 1:
        return f"Flatten with axis {attr(node, 'axis', 1)} (only axis 1 imports): '{SHAPES}'", "flatten from axis 1"
    return None


def _reduction(node, ctx: OnnxContext, quant: str):
    if attr(node, "noop_with_empty_axes", 0):
        return f"noop_with_empty_axes=1: '{SHAPES}'", "drop the no-op reduction"
    if len(node.input) > 1 and node.input[1]:
        axes = ctx.constants.get(node.input[1])
        if axes is None or axes.size:
            return (f"axes given as an input (opset 13+ ReduceSum, 18+ the others): '{SHAPES}'",
                    "export at an opset that takes axes as an attribute (ReduceSum opset 11, the others 17)")
    return None


def _resize(node, ctx: OnnxContext, quant: str):
    inputs = list(node.input)
    if len(inputs) > 3 and inputs[3] and not (len(inputs) > 2 and inputs[2]):
        return ("sizes given with the scales input left empty: \"Can't pull input data for <> : only constant "
                "initialization is supported\"", "export the Resize with scales instead of sizes")
    if attr(node, "axes") is not None:
        return f"Resize with an axes attribute (opset 18+): '{SHAPES}'", "give scales for every axis, no axes"
    return None


def _shape(node, ctx: OnnxContext, quant: str):
    rank = ctx.rank(node.input[0])
    if rank is None or not (has_attr(node, "start") or has_attr(node, "end")):
        return None
    start, end = attr(node, "start", 0), attr(node, "end", rank)
    if not (-rank <= start <= rank and -rank <= end <= rank):
        return f"Shape's start/end outside the rank: '{SHAPES}'", "keep start and end within the input's rank"
    if (start % rank if start < 0 else start) > (end % rank if end < 0 else end):
        return "Shape with start after end: 'cannot create std::vector larger than max_size()'", None
    return None


def _slice(node, ctx: OnnxContext, quant: str):
    shape = ctx.shape(node.input[0])
    starts = ctx.constants.get(node.input[1]) if len(node.input) > 1 else None
    if shape is None or starts is None:
        return None
    axes = ctx.constants.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    steps = ctx.constants.get(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    axes_list = list(axes) if axes is not None else list(range(len(starts)))
    for i, (axis, start) in enumerate(zip(axes_list, starts)):
        dim = shape[int(axis)]
        step = int(steps[i]) if steps is not None else 1
        if dim is not None and step > 0 and int(start) >= dim:
            return (f"a slice that starts past the end: 'Invalid slice begin {dim}, while dim is {dim}'",
                    "drop the empty slice")
    return None


def _split(node, ctx: OnnxContext, quant: str):
    parts = attr(node, "num_outputs")
    shape = ctx.shape(node.input[0])
    if parts and shape is not None:
        axis = attr(node, "axis", 0)
        dim = shape[axis]
        if dim is not None and dim % parts:
            return f"an uneven split ({dim} into {parts}): '{SHAPES}'", "give the split sizes as an input"
    return None


def _squeeze(node, ctx: OnnxContext, quant: str):
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1:
        axes = ctx.constants.get(node.input[1])
    if axes is not None and any(int(a) < 0 for a in np.ravel(axes)):
        return f"Squeeze with negative axes: '{SHAPES}'", "give the axes as non-negative numbers"
    return None


def _pad(node, ctx: OnnxContext, quant: str):
    if len(node.input) > 3 and node.input[3]:
        return f"Pad with an axes input (opset 18+): '{SHAPES}'", "give pads for every axis, no axes input"
    return None


def _erf(node, ctx: OnnxContext, quant: str):
    if quant == "uint8":
        return "with PTQ nncase 1.9 fails: 'Unsupported unary op for nnil: unary_erf'", "compile with --quant float"
    return None


def _min_max(node, ctx: OnnxContext, quant: str):
    if len([name for name in node.input if name]) == 1:
        return f"{node.op_type} of a single input: {SEGFAULT}", "drop the node (it is the identity)"
    return None


def _recurrent(node, ctx: OnnxContext, quant: str):
    if attr(node, "layout", 0) == 1:
        return f"layout=1 (batch first): '{SHAPES}'", "export with layout 0 (sequence first)"
    outputs = list(node.output) + [""] * 3
    if node.op_type == "LSTM" and not outputs[2]:
        return "an LSTM whose Y_c output is not used: 'Shape and data size don't match'", "keep the Y_c output"
    return None


def _lp_normalization(node, ctx: OnnxContext, quant: str):
    if not (has_attr(node, "axis") and has_attr(node, "p")):
        return f"LpNormalization without explicit axis and p attributes: '{BAD_OPTIONAL}'", "write axis and p"
    return None


def _quantize_linear(node, ctx: OnnxContext, quant: str):
    scale = ctx.constants.get(node.input[1]) if len(node.input) > 1 else None
    if scale is not None and scale.size > 1:
        return "'scale: only support per-tensor quantization.'", "let nncase quantise: export the float model"
    zero = ctx.types.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero in (4, 5):
        return f"a {'u' if zero == 4 else 'i'}16 zero point: 'QuantizeLinear: unsupported data type'", None
    return f"a QuantizeLinear in the graph: {SEGFAULT}", "let nncase quantise: export the float model"


def _cast(node, ctx: OnnxContext, quant: str):
    to = attr(node, "to", 1)
    if to == 11:
        return "a Cast to float64: 'Operation not supported'", "cast to float32"
    if to >= 17:  # the float8, 4-bit and 2-bit types
        return f"a Cast to a type nncase does not have (TensorProto {to}): '{BAD_OPTIONAL}'", "cast to float32"
    return None


def _gather_nd(node, ctx: OnnxContext, quant: str):
    if not has_attr(node, "batch_dims"):
        return f"GatherND without an explicit batch_dims attribute: '{BAD_OPTIONAL}'", "write batch_dims=0"
    indices = ctx.shape(node.input[1]) if len(node.input) > 1 else None
    if indices and indices[-1] == 1:
        return f"GatherND whose indices pick one axis (last dimension 1): {SEGFAULT} or aborts", \
            "use Gather on that axis"
    return None


def _matmul(node, ctx: OnnxContext, quant: str):
    a, b = (ctx.shape(name) for name in node.input[:2])
    if a and b and len(a) > 2 and len(b) > 2 and a[:-2] != b[:-2] and len(a) == len(b):
        return "MatMul with broadcast batch dimensions: 'we don't support such broadcast for matmul.'", \
            "give both inputs the same batch dimensions"
    return None


_CHECKS = {"Clip": _clip, "ConvTranspose": _conv_transpose, "MaxPool": _pool, "AveragePool": _pool,
           "Flatten": _flatten, "Resize": _resize, "Shape": _shape, "Slice": _slice, "Split": _split,
           "Squeeze": _squeeze, "Pad": _pad, "Erf": _erf, "Min": _min_max, "Max": _min_max, "LSTM": _recurrent,
           "GRU": _recurrent, "LpNormalization": _lp_normalization, "QuantizeLinear": _quantize_linear,
           "MatMul": _matmul, "Cast": _cast, "GatherND": _gather_nd, **{op: _reduction for op in _REDUCTIONS}}
