"""Keras / SavedModel / frozen GraphDef -> TFLite, with a dynamic batch fixed to 1.

nncase 1.9 cannot import the SHAPE/STRIDED_SLICE/PACK chain a dynamic-batch Flatten leaves in a
TFLite graph ("Invalid slice begin 0, while dim is 0"); with the batch fixed the converter folds it
into a constant RESHAPE. So every path here converts with a fixed batch of 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from k210.core.errors import BadInputError, ToolFailure
from k210.core.quiet import captured_output

from .sources import ModelFormat, ModelSource

# Ops that are graph plumbing, never a model's output.
_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "Assert", "Identity_n", "VarHandleOp", "SaveV2", "RestoreV2"}


@dataclass
class TFLiteModel:
    data: bytes
    input_name: str
    output_name: str
    input_shape: list[int]
    notes: list[str] = field(default_factory=list)


def convert_to_tflite(
    source: ModelSource,
    *,
    input_node: str | None = None,
    output_node: str | None = None,
) -> TFLiteModel:
    if source.format is ModelFormat.TFLITE:
        return _existing_tflite(source.path)
    if source.format is ModelFormat.KERAS:
        return keras_to_tflite(load_keras(source.path))
    if source.format is ModelFormat.SAVED_MODEL:
        return _saved_model_to_tflite(source.path)
    if source.format is ModelFormat.FROZEN_PB:
        return _frozen_pb_to_tflite(source.path, input_node, output_node)
    raise BadInputError(f"cannot convert a {source.format.value} model to TFLite")


def load_keras(path: Path):
    import keras

    try:
        with captured_output():
            return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        raise BadInputError(f"cannot load Keras model {path}: {_first_line(exc)}") from None


def keras_to_tflite(model) -> TFLiteModel:
    import tensorflow as tf

    if len(model.inputs) != 1:
        raise BadInputError(f"only single-input models are supported (this one has {len(model.inputs)} inputs)")
    shape = _fixed_batch_shape(list(model.inputs[0].shape), model.inputs[0].name)
    spec = tf.TensorSpec(shape, model.inputs[0].dtype, name="input")
    function = tf.function(lambda x: model(x, training=False))
    concrete = _constant_folded(function.get_concrete_function(spec))
    notes = ["dynamic batch fixed to 1"] if model.inputs[0].shape[0] is None else []
    data = _run_converter(lambda: tf.lite.TFLiteConverter.from_concrete_functions([concrete]))
    return TFLiteModel(data, model.inputs[0].name, ",".join(o.name for o in model.outputs), shape, notes)


def _saved_model_to_tflite(path: Path) -> TFLiteModel:
    import tensorflow as tf

    try:
        with captured_output():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise BadInputError(f"cannot load SavedModel {path}: {_first_line(exc)}") from None
    signature = getattr(loaded, "signatures", {}).get("serving_default")
    if signature is None:
        raise BadInputError(f"SavedModel {path} has no 'serving_default' signature")
    _args, kwargs = signature.structured_input_signature
    if len(kwargs) != 1 or len(signature.structured_outputs) != 1:
        raise BadInputError("only single-input, single-output SavedModels are supported")
    (input_name, input_spec), = kwargs.items()
    (output_name,) = signature.structured_outputs.keys()
    shape = _fixed_batch_shape(list(input_spec.shape), input_name)

    def call(x):
        return signature(**{input_name: x})[output_name]

    concrete = _constant_folded(tf.function(call).get_concrete_function(tf.TensorSpec(shape, input_spec.dtype)))
    notes = ["dynamic batch fixed to 1"] if input_spec.shape[0] is None else []
    data = _run_converter(lambda: tf.lite.TFLiteConverter.from_concrete_functions([concrete]))
    return TFLiteModel(data, input_name, output_name, shape, notes)


def _constant_folded(concrete):
    """Variables become constants, so TFLite gets FULLY_CONNECTED/CONV_2D with constant weights
    instead of VAR_HANDLE/READ_VARIABLE/BATCH_MATMUL (which nncase cannot lower to the KPU)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete)


def read_graph_def(path: Path):
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeWarning, ValueError):
        raise BadInputError(f"{path} is not a frozen GraphDef (protobuf parse failed)") from None
    if not graph_def.node:
        raise BadInputError(f"{path} is not a frozen GraphDef (no nodes)")
    return graph_def


def find_io_nodes(graph_def, input_node: str | None, output_node: str | None) -> tuple[str, str]:
    """The input placeholder and output node of a frozen graph, when unambiguous."""
    names = {node.name for node in graph_def.node}
    for given, what in ((input_node, "input"), (output_node, "output")):
        if given is not None and given not in names:
            raise BadInputError(f"{what} node '{given}' is not in the graph")
    if input_node is None:
        placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
        if len(placeholders) != 1:
            raise BadInputError(
                f"cannot tell the input node ({len(placeholders)} placeholders: "
                f"{', '.join(placeholders[:5]) or 'none'}); pass --input-node"
            )
        input_node = placeholders[0]
    if output_node is None:
        consumed = {inp.lstrip("^").split(":")[0] for node in graph_def.node for inp in node.input}
        sinks = [n.name for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]
        if len(sinks) != 1:
            raise BadInputError(
                f"cannot tell the output node ({len(sinks)} candidates: {', '.join(sinks[:5]) or 'none'}); "
                "pass --output-node"
            )
        output_node = sinks[0]
    return input_node, output_node


def placeholder_shape(graph_def, name: str) -> list[int | None]:
    node = next(n for n in graph_def.node if n.name == name)
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        raise BadInputError(f"input node '{name}' has no static rank; cannot fix its shape")
    return [None if d.size < 0 else d.size for d in node.attr["shape"].shape.dim]


def _frozen_pb_to_tflite(path: Path, input_node: str | None, output_node: str | None) -> TFLiteModel:
    import tensorflow as tf

    graph_def = read_graph_def(path)
    input_node, output_node = find_io_nodes(graph_def, input_node, output_node)
    declared = placeholder_shape(graph_def, input_node)
    shape = _fixed_batch_shape(declared, input_node)
    notes = ["dynamic batch fixed to 1 (shape ops folded)"] if declared and declared[0] is None else []
    data = _run_converter(
        lambda: tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(path), [input_node], [output_node], input_shapes={input_node: shape}
        )
    )
    return TFLiteModel(data, input_node, output_node, shape, notes)


def _existing_tflite(path: Path) -> TFLiteModel:
    from .densify import count_sparse_weights, densify_bytes
    from .dequantize import count_float16_weights, dequantize_float16_bytes
    from .tflite_reader import read_tflite

    data = path.read_bytes()
    notes = []
    if count_sparse_weights(data):  # nncase 1.9 has no DENSIFY: sparse constant weights become dense ones
        densified = densify_bytes(data)
        data = densified.data
        notes.append(f"sparse weights densified ({densified.folded} DENSIFY ops folded)")
    if count_float16_weights(data):  # nncase 1.9 refuses float16 weights: fold them to float32 first
        folded = dequantize_float16_bytes(data)
        data = folded.data
        notes.append(f"float16 weights dequantised to float32 ({folded.folded} DEQUANTIZE ops folded)")
    info = read_tflite(data)
    if len(info.inputs) != 1 or not info.outputs:
        raise BadInputError("only single-input TFLite models are supported")
    first_in = info.inputs[0]
    if first_in.dynamic:
        notes.append("dynamic batch in the TFLite signature (nncase sees batch 1)")
    return TFLiteModel(data, first_in.name, ",".join(o.name for o in info.outputs), first_in.shape, notes)


def _fixed_batch_shape(shape: list[int | None], name: str) -> list[int]:
    if not shape:
        raise BadInputError(f"input '{name}' is a scalar; expected a batch of tensors")
    rest = shape[1:]
    if any(d is None or d < 0 for d in rest):
        raise BadInputError(f"input '{name}' has dynamic dimensions {shape}; the K210 needs fixed shapes")
    return [1, *[int(d) for d in rest]]


def _run_converter(make_converter) -> bytes:
    try:
        with captured_output() as log:
            converter = make_converter()
            return bytes(converter.convert())
    except BadInputError:
        raise
    except Exception as exc:
        detail = _first_line(exc) or log.tail(3)
        raise ToolFailure(f"TFLite conversion failed: {detail}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
