"""Read a TFLite flatbuffer's tensors and ops with the `tflite` package: no TensorFlow import,
so `k210 lint model.tflite` stays fast enough for an editor hook."""

from __future__ import annotations

from dataclasses import dataclass, field

from k210.core.errors import BadInputError

_TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64",
}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    signature: list[int] | None = None  # shape_signature: -1 marks a dynamic dimension
    quantized: bool = False
    is_constant: bool = False

    @property
    def dynamic(self) -> bool:
        return self.signature is not None and any(d < 0 for d in self.signature)


@dataclass
class OpInfo:
    index: int
    opcode: str  # e.g. "CONV_2D", or "CUSTOM:FlexTensorListReserve"
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteInfo:
    tensors: list[TensorInfo]
    ops: list[OpInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    size: int

    def tensor(self, index: int) -> TensorInfo | None:
        return self.tensors[index] if 0 <= index < len(self.tensors) else None


def _builtin_names() -> dict[int, str]:
    import tflite

    return {
        value: name
        for name, value in vars(tflite.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def read_tflite(data: bytes) -> TFLiteInfo:
    import tflite

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BadInputError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        return _read(tflite, data)
    except BadInputError:
        raise
    except Exception as exc:  # flatbuffers raises struct/Index errors on truncation
        raise BadInputError(f"corrupt or truncated TFLite file ({type(exc).__name__})") from None


def _read(tflite, data: bytes) -> TFLiteInfo:
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise BadInputError("TFLite file has no subgraph")
    graph = model.Subgraphs(0)
    names = _builtin_names()
    constant_buffers = {
        i for i in range(model.BuffersLength()) if model.Buffers(i).DataLength() > 0
    }
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        signature = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else None
        quant = t.Quantization()
        tensors.append(
            TensorInfo(
                index=i,
                name=(t.Name() or b"").decode("utf-8", "replace"),
                shape=[int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                dtype=_TYPE_NAMES.get(t.Type(), f"type{t.Type()}"),
                signature=[int(d) for d in signature] if signature is not None else None,
                quantized=bool(quant is not None and quant.ScaleLength() > 0),
                is_constant=t.Buffer() in constant_buffers,
            )
        )
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        opcode = names.get(builtin, f"BUILTIN_{builtin}")
        if opcode == "CUSTOM":
            opcode = "CUSTOM:" + (code.CustomCode() or b"?").decode("utf-8", "replace")
        ops.append(
            OpInfo(
                index=i,
                opcode=opcode,
                inputs=[int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else [],
                outputs=[int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else [],
                options=_options(tflite, op, opcode),
            )
        )
    inputs = [tensors[int(i)] for i in graph.InputsAsNumpy()] if graph.InputsLength() else []
    outputs = [tensors[int(i)] for i in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
    return TFLiteInfo(tensors, ops, inputs, outputs, len(data))


_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDINGS = {0: "SAME", 1: "VALID"}


def _options(tflite, op, opcode: str) -> dict:
    """The builtin options lint needs: strides, padding, fused activation, pool size."""
    table = op.BuiltinOptions()
    if table is None:
        return {}
    classes = {
        "CONV_2D": tflite.Conv2DOptions,
        "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
        "MAX_POOL_2D": tflite.Pool2DOptions,
        "AVERAGE_POOL_2D": tflite.Pool2DOptions,
        "FULLY_CONNECTED": tflite.FullyConnectedOptions,
        "ADD": tflite.AddOptions,
        "MUL": tflite.MulOptions,
        "SUB": tflite.SubOptions,
        "TRANSPOSE_CONV": tflite.TransposeConvOptions,
    }
    cls = classes.get(opcode)
    if cls is None:
        return {}
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    out: dict = {}
    for key, getter in (
        ("stride_h", "StrideH"), ("stride_w", "StrideW"), ("filter_h", "FilterHeight"),
        ("filter_w", "FilterWidth"), ("dilation_h", "DilationHFactor"), ("dilation_w", "DilationWFactor"),
        ("depth_multiplier", "DepthMultiplier"),
    ):
        if hasattr(opt, getter):
            out[key] = int(getattr(opt, getter)())
    if hasattr(opt, "Padding"):
        out["padding"] = _PADDINGS.get(opt.Padding(), str(opt.Padding()))
    if hasattr(opt, "FusedActivationFunction"):
        out["activation"] = _ACTIVATIONS.get(opt.FusedActivationFunction(), "?")
    return out


HEADS = {"SOFTMAX": "softmax", "LOGISTIC": "sigmoid"}


def output_heads(data: bytes) -> list[tuple[int, str | None]]:
    """Per model output (TFLite order): its element count and the activation that makes it, when that is a
    softmax or a sigmoid (class scores), else None. Ops that only reshape (RESHAPE, SQUEEZE) are looked through."""
    import math

    info = read_tflite(data)
    producer = {t: op for op in info.ops for t in op.outputs}
    heads: list[tuple[int, str | None]] = []
    for tensor in info.outputs:
        index, head = tensor.index, None
        for _ in range(4):  # a few reshapes at most between the activation and the output
            op = producer.get(index)
            if op is None:
                break
            if op.opcode in HEADS:
                head = HEADS[op.opcode]
                break
            if op.opcode not in ("RESHAPE", "SQUEEZE") or not op.inputs:
                break
            index = op.inputs[0]
        heads.append((math.prod(d for d in tensor.shape if d > 0), head))
    return heads
