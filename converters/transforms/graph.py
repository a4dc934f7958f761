"""A float TFLite model's weights, editable in place (TF's flatbuffer object API), and the layer pairs
the data-free quantisation transforms work on.

Only what the transforms need: the ops with constant float32 weights (CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED), their fused activation, who reads each tensor, and whether a weight buffer is shared
(a shared buffer is never rewritten: the other reader would change too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from k210.core.errors import BadInputError

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit", 6: "sigmoid"}
_FLOAT32 = 0


@dataclass
class WeightedOp:
    index: int  # position in the subgraph's operator list
    opcode: str
    x: int  # input tensor
    weights: int  # weight tensor
    bias: int  # bias tensor, -1 when the op has none
    out: int  # output tensor
    activation: str  # the fused activation ("none", "relu", "relu6", ...)
    name: str  # the output tensor's name

    @property
    def is_depthwise(self) -> bool:
        return self.opcode == "DEPTHWISE_CONV_2D"


class Model:
    """A TFLite model, its first subgraph's weighted ops and the tensors' readers."""

    def __init__(self, tflite: bytes):
        from tensorflow.lite.tools import flatbuffer_utils

        self._fb = flatbuffer_utils
        self.model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
        if not self.model.subgraphs:
            raise BadInputError("the TFLite model has no subgraph")
        self.graph = self.model.subgraphs[0]
        codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in self.model.operatorCodes]
        names = {v: k for k, v in vars(_builtin_ops()).items() if not k.startswith("_") and isinstance(v, int)}
        self.opcodes = [names.get(codes[op.opcodeIndex], "?") for op in self.graph.operators]
        self.readers: dict[int, list[int]] = {}
        for i, op in enumerate(self.graph.operators):
            for t in op.inputs:
                if int(t) >= 0:
                    self.readers.setdefault(int(t), []).append(i)
        self.outputs = {int(t) for t in self.graph.outputs}
        buffers: dict[int, int] = {}
        for tensor in self.graph.tensors:
            buffers[tensor.buffer] = buffers.get(tensor.buffer, 0) + 1
        self._buffer_users = buffers
        self.weighted = {i: w for i in range(len(self.graph.operators)) if (w := self._weighted(i)) is not None}

    def to_bytes(self) -> bytes:
        return bytes(self._fb.convert_object_to_bytearray(self.model))

    def tensor_name(self, index: int) -> str:
        name = self.graph.tensors[index].name
        return name.decode() if isinstance(name, bytes) else str(name)

    def constant(self, index: int) -> np.ndarray | None:
        """The float32 constant behind a tensor (a copy), or None when it is not one."""
        if index < 0:
            return None
        tensor = self.graph.tensors[index]
        data = self.model.buffers[tensor.buffer].data if tensor.buffer < len(self.model.buffers) else None
        if tensor.type != _FLOAT32 or data is None or len(data) == 0:
            return None
        shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32).reshape(shape).copy()

    def writable(self, index: int) -> bool:
        """A constant only this tensor uses: rewriting it changes nothing else."""
        return index >= 0 and self.constant(index) is not None and \
            self._buffer_users.get(self.graph.tensors[index].buffer, 0) == 1

    def set_constant(self, index: int, value: np.ndarray) -> None:
        tensor = self.graph.tensors[index]
        old = self.constant(index)
        if old is None or old.shape != value.shape:
            raise ValueError(f"tensor {index}: cannot replace {None if old is None else old.shape} by {value.shape}")
        self.model.buffers[tensor.buffer].data = np.frombuffer(
            np.ascontiguousarray(value, np.float32).tobytes(), np.uint8).copy()

    def op_options(self, op_index: int):
        return self.graph.operators[op_index].builtinOptions

    def single_reader(self, tensor: int) -> int | None:
        """The one op reading `tensor`, None when several ops (or the graph's caller) read it."""
        readers = self.readers.get(tensor, [])
        return readers[0] if len(readers) == 1 and tensor not in self.outputs else None

    def _weighted(self, i: int) -> WeightedOp | None:
        opcode = self.opcodes[i]
        if opcode not in WEIGHTED:
            return None
        op = self.graph.operators[i]
        inputs = [int(t) for t in op.inputs]
        if len(inputs) < 2 or self.constant(inputs[1]) is None:
            return None  # weights computed at run time, or not float32
        bias = inputs[2] if len(inputs) > 2 else -1
        if bias >= 0 and self.constant(bias) is None:
            return None
        options = op.builtinOptions
        activation = ACTIVATIONS.get(int(getattr(options, "fusedActivationFunction", 0) or 0), "other")
        if opcode == "FULLY_CONNECTED" and (getattr(options, "weightsFormat", 0) or 0) != 0:
            return None  # shuffled weight formats
        out = int(op.outputs[0])
        return WeightedOp(i, opcode, inputs[0], inputs[1], bias, out, activation, self.tensor_name(out))


def _builtin_ops():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.BuiltinOperator


# --- weight layouts: which axis is an output channel, which an input channel -----------------------------------


def out_channel_ranges(op: WeightedOp, w: np.ndarray) -> np.ndarray:
    """max |w| per output channel (CONV_2D OHWI, FC [O, I]: axis 0; depthwise 1HW(C*M): last axis)."""
    if op.is_depthwise:
        return np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
    return np.abs(w).reshape(w.shape[0], -1).max(axis=1)


def scale_out_channels(op: WeightedOp, w: np.ndarray, factor: np.ndarray) -> np.ndarray:
    if op.is_depthwise:
        return w * factor.reshape(1, 1, 1, -1)
    return w * factor.reshape((-1,) + (1,) * (w.ndim - 1))


def in_channel_ranges(op: WeightedOp, w: np.ndarray, multiplier: int) -> np.ndarray:
    """max |w| per input channel (CONV_2D OHWI and FC [O, I]: last axis; depthwise: channel c feeds
    output channels c*M .. c*M+M-1)."""
    if op.is_depthwise:
        per_out = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
        return per_out.reshape(-1, multiplier).max(axis=1)
    return np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)


def scale_in_channels(op: WeightedOp, w: np.ndarray, factor: np.ndarray, multiplier: int) -> np.ndarray:
    if op.is_depthwise:
        return w * np.repeat(factor, multiplier).reshape(1, 1, 1, -1)
    return w * factor.reshape((1,) * (w.ndim - 1) + (-1,))


def depth_multiplier(model: Model, op: WeightedOp) -> int:
    return int(getattr(model.op_options(op.index), "depthMultiplier", 1) or 1) if op.is_depthwise else 1


def kernel_is_pointwise(model: Model, op: WeightedOp, w: np.ndarray) -> bool:
    """A consumer whose bias can take a constant input shift exactly: FC, a 1x1 conv, or VALID padding
    (SAME padding feeds zeros at the border, where a shifted input would not be shifted)."""
    if op.opcode == "FULLY_CONNECTED":
        return True
    height, width = (w.shape[1], w.shape[2])
    padding = int(getattr(model.op_options(op.index), "padding", 0) or 0)  # 0 SAME, 1 VALID
    return (height, width) == (1, 1) or padding == 1


@dataclass
class Pair:
    """Weighted layers with nothing in between but, at most, a ReLU: `first`'s output channel c is input
    channel c of `second` and of every layer in `also` (a tensor read by several layers: all scale alike)."""

    first: WeightedOp
    second: WeightedOp
    activation: str  # "none" or "relu" (fused into `first`, or a separate RELU op)
    via: int | None = None  # the separate activation op, if any
    tensor: int = -1  # the tensor the consumers read
    also: list[WeightedOp] = field(default_factory=list)

    @property
    def consumers(self) -> list[WeightedOp]:
        return [self.second, *self.also]

    @property
    def second_names(self) -> str:
        return " + ".join(op.name for op in self.consumers)


def find_pairs(model: Model) -> tuple[list[Pair], list[str]]:
    """Layer pairs cross-layer equalisation may scale, and why each other candidate was left alone."""
    pairs, skipped = [], []
    for op in model.weighted.values():
        tensor, via, activation = op.out, None, op.activation
        reader = model.single_reader(tensor)
        if reader is not None and model.opcodes[reader] in ("RELU", "RELU6") and activation == "none":
            via, activation = reader, model.opcodes[reader].lower()
            tensor = int(model.graph.operators[reader].outputs[0])
        readers = model.readers.get(tensor, [])
        if not readers or tensor in model.outputs or any(r not in model.weighted for r in readers):
            continue
        consumers = [model.weighted[r] for r in readers]
        if any(c.x != tensor for c in consumers):
            continue
        if any((op.opcode == "FULLY_CONNECTED") != (c.opcode == "FULLY_CONNECTED") for c in consumers):
            continue  # a conv's NHWC map read as a flat vector: channel c is not one input column
        where = f"{op.name} -> {' + '.join(c.name for c in consumers)}"
        if activation not in ("none", "relu"):
            skipped.append(f"{where}: {activation} between them (its clip bound would have to scale per channel)")
            continue
        if not (model.writable(op.weights) and all(model.writable(c.weights) for c in consumers)
                and (op.bias < 0 or model.writable(op.bias))):
            skipped.append(f"{where}: a weight buffer is shared with another tensor")
            continue
        pairs.append(Pair(op, consumers[0], activation, via, tensor, consumers[1:]))
    return pairs, skipped
