"""Lint a `.keras` file without TensorFlow: the archive is a zip of config.json and model.weights.h5.

From the layer configs this builds the TFLite graph the project's converter (converters.to_tflite,
batch fixed to 1) makes of the model: the same ops in the same order, with the tensors lint's
placement and memory estimate read (shapes, constants, fused activations). The converter folds a
BatchNormalization into the conv before it, fuses a ReLU/ReLU6 into the conv, dense or add before it,
drops a Dense's all-zero bias and stores equal constant buffers once; the biases are read from the
weights file for that. A layer whose TFLite form cannot be decided from its config (a custom layer, a
Lambda, a nested model, anything not listed here) raises NeedsTensorFlow: the caller then takes the
TensorFlow path and says why.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from k210.converters.tflite_reader import OpInfo, TensorInfo, TFLiteInfo
from k210.core.errors import BadInputError

PASS_THROUGH = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                          "AlphaDropout", "ActivityRegularization"})
FUSABLE = {"relu": "RELU", "relu6": "RELU6"}
SEPARATE = {"softmax": "SOFTMAX", "sigmoid": "LOGISTIC"}
_FUSING_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"})


class NeedsTensorFlow(Exception):
    """This model's TFLite form needs the converter itself; the message names the layer and why."""


@dataclass
class KerasArchive:
    config: dict
    weights: object  # an open h5py.File, or None when the archive has none
    layers: list[dict] = field(default_factory=list)


def read_archive(path: Path) -> KerasArchive:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            names = set(archive.namelist())
            weights = None
            if "model.weights.h5" in names:
                import io

                import h5py

                weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise BadInputError(f"cannot read Keras archive {path}: {exc}") from None
    if config.get("class_name") not in ("Sequential", "Functional", "Model"):
        raise NeedsTensorFlow(f"the model is a {config.get('class_name')} (a subclassed model)")
    return KerasArchive(config, weights, list(config.get("config", {}).get("layers", [])))


@dataclass
class _Value:
    tensor: int  # index in the graph's tensors
    shape: list[int]
    op: OpInfo | None = None  # the op that made it (None: the model's input)
    fused_bn: bool = False


class GraphBuilder:
    """Tensors and ops, in the converter's order, with equal constant buffers stored once."""

    def __init__(self, weights, keys: dict[str, str]) -> None:
        self.tensors: list[TensorInfo] = []
        self.ops: list[OpInfo] = []
        self.constants: dict[str, int] = {}
        self.weights, self.keys = weights, keys
        self.reader_kinds: dict[str, set[str]] = {}
        self.layer_readers: dict[str, int] = {}
        self.pad_values: dict[int, list[tuple[int, int]]] = {}
        self.pad_readers: dict[int, int] = {}

    def tensor(self, name: str, shape: list[int], dtype: str = "float32") -> int:
        self.tensors.append(TensorInfo(len(self.tensors), name, list(shape), dtype))
        return len(self.tensors) - 1

    def constant(self, name: str, shape: list[int], key: bytes | None, dtype: str = "float32") -> int:
        """A constant tensor; `key` is its content when it may equal another (None: assumed unique)."""
        digest = None if key is None else hashlib.sha1(key + str((shape, dtype)).encode()).hexdigest()
        if digest is not None and digest in self.constants:
            return self.constants[digest]
        index = self.tensor(name, shape, dtype)
        self.tensors[index].is_constant = True
        if digest is not None:
            self.constants[digest] = index
        return index

    def readers_of(self, tensor: int) -> int:
        return self.pad_readers.get(tensor, 0)

    def drop_constant(self, index: int) -> None:
        """A constant that a fold replaced: left in the list (indices stay) as an empty, unused tensor."""
        tensor = self.tensors[index]
        tensor.is_constant, tensor.shape = False, []
        self.constants = {k: v for k, v in self.constants.items() if v != index}

    def op(self, opcode: str, inputs: list[int], outputs: list[int], **options) -> OpInfo:
        self.ops.append(OpInfo(len(self.ops), opcode, inputs, outputs, options))
        return self.ops[-1]

    def var(self, layer: str, index: int) -> np.ndarray | None:
        if self.weights is None:
            return None
        try:
            return np.asarray(self.weights[f"layers/{self.keys[layer]}/vars/{index}"])
        except KeyError:
            return None


def graph_from_archive(archive: KerasArchive) -> tuple[TFLiteInfo, list[ConfigLayer]]:
    """The TFLite graph the converter makes of the archive's model, and its layers for the layer check."""
    config = archive.config["config"]
    layers = archive.layers
    if not layers or layers[0].get("class_name") != "InputLayer":
        raise NeedsTensorFlow("the model does not start with an InputLayer")
    sequential = archive.config["class_name"] == "Sequential"
    inbound = {_name(layer): _inbound(layer, _name(layers[i - 1]) if sequential and i else None)
               for i, layer in enumerate(layers)}
    readers: dict[str, int] = {}
    reader_kinds: dict[str, set[str]] = {}
    for layer in layers:
        for source in inbound[_name(layer)]:
            readers[source] = readers.get(source, 0) + 1
            reader_kinds.setdefault(source, set()).add(layer["class_name"])
    if not sequential:
        outputs = [o[0] for o in _flat(config.get("output_layers"))]
        inputs = [i[0] for i in _flat(config.get("input_layers"))]
        if len(inputs) != 1:
            raise BadInputError(f"only single-input models are supported (this one has {len(inputs)} inputs)")
    else:
        outputs = [_name(layers[-1])]
    for name in outputs:
        readers[name] = readers.get(name, 0) + 1  # a model output is read: nothing fuses into it
    builder = GraphBuilder(archive.weights, _weight_keys(layers, sequential))
    builder.reader_kinds, builder.layer_readers = reader_kinds, readers
    values: dict[str, _Value] = {}
    shims: list[ConfigLayer] = []
    for layer in layers:
        sources = [values[s] for s in inbound[_name(layer)]]
        values[_name(layer)] = _emit(builder, layer, sources, readers)
        if sequential and layer["class_name"] == "InputLayer":
            continue  # not one of a Sequential's layers
        shim = type(layer["class_name"], (ConfigLayer,), {})  # check_layer goes by the class name
        shims.append(shim(_name(layer), layer.get("config", {}), sources[0].shape if sources else None))
    outs = [builder.tensors[values[name].tensor] for name in outputs]
    first = builder.tensors[0]
    return TFLiteInfo(builder.tensors, builder.ops, [first], outs, 0), shims


class ConfigLayer:
    """What keras_layers.check_layer reads of a layer (name, get_config, input.shape), from its config."""

    def __init__(self, name: str, config: dict, input_shape: list[int] | None) -> None:
        self.name, self._config = name, config
        self.input = None if input_shape is None else _Shaped([None, *input_shape[1:]])

    def get_config(self) -> dict:
        return self._config


@dataclass
class _Shaped:
    shape: list


def _weight_keys(layers: list[dict], sequential: bool) -> dict[str, str]:
    """Where Keras 3 stores each layer's variables in model.weights.h5: under its class name in snake
    case, numbered _1, _2.. in the model's layer order (a Sequential's InputLayer is not one of them)."""
    keys: dict[str, str] = {}
    used: dict[str, int] = {}
    for layer in layers:
        if sequential and layer.get("class_name") == "InputLayer":
            continue
        key = _snake(layer.get("class_name", ""))
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys[_name(layer)] = key
    return keys


def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _name(layer: dict) -> str:
    return layer.get("name") or layer.get("config", {}).get("name", "?")


def _flat(value) -> list[list]:
    if not value:
        return []
    return [value] if isinstance(value[0], str) else list(value)


def _inbound(layer: dict, previous: str | None) -> list[str]:
    if layer.get("class_name") == "InputLayer":
        return []
    if previous is not None:
        return [previous]
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) != 1:
        raise NeedsTensorFlow(f"layer {_name(layer)} is {'shared' if nodes else 'unconnected'}")
    if set(nodes[0].get("kwargs") or {}) - {"training", "mask"}:
        raise NeedsTensorFlow(f"layer {_name(layer)} is called with keyword arguments")
    found: list[str] = []

    def walk(item) -> None:
        if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
            history = item["config"]["keras_history"]
            if history[1] != 0 or history[2] != 0:
                raise NeedsTensorFlow(f"layer {_name(layer)} reads a shared layer's output")
            found.append(history[0])
        elif isinstance(item, (list, tuple)):
            for sub in item:
                walk(sub)
        elif isinstance(item, dict):
            raise NeedsTensorFlow(f"layer {_name(layer)} has a non-tensor argument")

    walk(nodes[0].get("args", []))
    return found


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[-1])


def _activation(config: dict) -> str:
    value = config.get("activation", "linear")
    if isinstance(value, dict):
        value = value.get("config", {}).get("name") or value.get("class_name")
    return str(value)


def _out_size(size: int, kernel: int, stride: int, padding: str, dilation: int = 1) -> int:
    if padding == "same":
        return -(-size // stride)
    if padding == "valid":
        return (size - (kernel - 1) * dilation - 1) // stride + 1
    raise NeedsTensorFlow(f"padding '{padding}'")


def _emit(b: GraphBuilder, layer: dict, sources: list[_Value], readers: dict[str, int]) -> _Value:
    kind, config, name = layer["class_name"], layer.get("config", {}), _name(layer)
    if layer.get("module") not in (None, "keras.layers", "keras.src.layers") and kind != "InputLayer":
        raise NeedsTensorFlow(f"layer {name} is a custom {kind} ({layer.get('module')})")
    if config.get("data_format", "channels_last") != "channels_last":
        raise NeedsTensorFlow(f"layer {name} is channels_first")
    if kind == "InputLayer":
        shape = config.get("batch_shape") or [None, *config.get("input_shape", [])]
        if None in shape[1:] or len(shape) < 2:
            raise NeedsTensorFlow(f"input {name} has an unknown dimension")
        if config.get("dtype", "float32") != "float32":
            raise NeedsTensorFlow(f"input {name} is {config.get('dtype')}")
        shape = [1, *shape[1:]]
        return _Value(b.tensor(name, shape), shape)
    if kind in PASS_THROUGH:
        return sources[0]
    if len(sources) != 1 and kind not in ("Add", "Concatenate"):
        raise NeedsTensorFlow(f"layer {name} ({kind}) has {len(sources)} inputs")
    x = sources[0]
    if kind in ("Conv2D", "DepthwiseConv2D"):
        return _conv(b, kind, name, config, x)
    if kind == "Dense":
        return _dense(b, name, config, x)
    if kind == "BatchNormalization":
        return _fold_batch_norm(b, name, config, x, readers)
    if kind in ("ReLU", "Activation", "Softmax"):
        return _activation_layer(b, kind, name, config, x, readers)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        (fh, fw), (sh, sw) = _pair(config["pool_size"]), _pair(config.get("strides") or config["pool_size"])
        padding = config.get("padding", "valid")
        shape = [1, _out_size(x.shape[1], fh, sh, padding), _out_size(x.shape[2], fw, sw, padding), x.shape[3]]
        opcode = "MAX_POOL_2D" if kind == "MaxPooling2D" else "AVERAGE_POOL_2D"
        out = b.tensor(name, shape)
        return _Value(out, shape, b.op(opcode, [x.tensor], [out], stride_h=sh, stride_w=sw, filter_h=fh, filter_w=fw,
                                       padding=padding.upper(), activation="NONE"))
    if kind == "GlobalAveragePooling2D":
        keep = bool(config.get("keepdims", False))
        shape = [1, 1, 1, x.shape[3]] if keep else [1, x.shape[3]]
        axes = b.constant(f"{name}/axes", [2], np.array([1, 2], np.int32).tobytes(), "int32")
        out = b.tensor(name, shape)
        return _Value(out, shape, b.op("MEAN", [x.tensor, axes], [out]))
    if kind in ("Flatten", "Reshape"):
        shape = [1, int(np.prod(x.shape[1:]))] if kind == "Flatten" else [1, *config["target_shape"]]
        if -1 in shape[1:] or int(np.prod(shape)) != int(np.prod(x.shape)):
            raise NeedsTensorFlow(f"layer {name}: reshape to {shape}")
        if shape == x.shape:
            raise NeedsTensorFlow(f"layer {name}: a reshape that changes nothing")
        if len(shape) == 2 and all(d == 1 for d in x.shape[:-1]) and b.reader_kinds.get(name) == {"Dense"}:
            return _Value(x.tensor, shape)  # the converter lets the FULLY_CONNECTED read the 1x1 map (measured)
        target = b.constant(f"{name}/shape", [len(shape)], np.array(shape, np.int32).tobytes(), "int32")
        out = b.tensor(name, shape)
        return _Value(out, shape, b.op("RESHAPE", [x.tensor, target], [out]))
    if kind == "Add":
        if len(sources) != 2 or sources[0].shape != sources[1].shape:
            raise NeedsTensorFlow(f"layer {name}: an Add of {len(sources)} inputs or of different shapes")
        out = b.tensor(name, x.shape)
        return _Value(out, x.shape, b.op("ADD", [sources[0].tensor, sources[1].tensor], [out], activation="NONE"))
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = [(_pair(p) if not isinstance(p, int) else (p, p))
                                        for p in _padding_pairs(config["padding"])]
        shape = [1, x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3]]
        pads = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
        paddings = b.constant(f"{name}/paddings", [4, 2], pads.tobytes(), "int32")
        out = b.tensor(name, shape)
        op = b.op("PAD", [x.tensor, paddings], [out])
        b.pad_values[op.index] = [tuple(int(v) for v in row) for row in pads]
        b.pad_readers[out] = b.layer_readers.get(name, 0)
        return _Value(out, shape, op)
    raise NeedsTensorFlow(f"layer {name} ({kind}) is not translated from its config")


def _padding_pairs(value) -> list:
    if isinstance(value, int):
        return [value, value]
    return list(value)


def _conv(b: GraphBuilder, kind: str, name: str, config: dict, x: _Value) -> _Value:
    if len(x.shape) != 4:
        raise NeedsTensorFlow(f"layer {name}: a {kind} on a rank-{len(x.shape)} tensor")
    (kh, kw), (sh, sw) = _pair(config["kernel_size"]), _pair(config.get("strides", 1))
    if _pair(config.get("dilation_rate", 1)) != (1, 1) or int(config.get("groups", 1)) != 1:
        raise NeedsTensorFlow(f"layer {name}: dilation or groups")
    padding = config.get("padding", "valid")
    x, padding = _fuse_pad(b, x, padding, (kh, kw), (sh, sw))
    h, w = _out_size(x.shape[1], kh, sh, padding), _out_size(x.shape[2], kw, sw, padding)
    if kind == "Conv2D":
        channels = int(config["filters"])
        weights = b.constant(f"{name}/kernel", [channels, kh, kw, x.shape[3]], None)
        options = {}
    else:
        multiplier = int(config.get("depth_multiplier", 1))
        channels = x.shape[3] * multiplier
        weights = b.constant(f"{name}/depthwise_kernel", [1, kh, kw, channels], None)
        options = {"depth_multiplier": multiplier}
    bias = b.var(name, 1) if config.get("use_bias", True) else np.zeros(channels, np.float32)
    shape = [1, h, w, channels]
    bias_key = None if bias is None else bias.astype(np.float32).tobytes()
    bias_index = b.constant(f"{name}/bias", [channels], bias_key)
    out = b.tensor(name, shape)
    opcode = "CONV_2D" if kind == "Conv2D" else "DEPTHWISE_CONV_2D"
    op = b.op(opcode, [x.tensor, weights, bias_index], [out], stride_h=sh, stride_w=sw, dilation_h=1, dilation_w=1,
              padding=padding.upper(), activation="NONE", **options)
    value = _Value(out, shape, op)
    return _apply_activation(b, name, _activation(config), value)


def _fuse_pad(b: GraphBuilder, x: _Value, padding: str, kernel: tuple[int, int],
              stride: tuple[int, int]) -> tuple[_Value, str]:
    """ZeroPadding2D + a 'valid' conv whose padding is exactly what 'same' would add: the converter makes
    one 'same' conv of it (MobileNet's stride-2 blocks; measured)."""
    op = x.op
    if padding != "valid" or op is None or op.opcode != "PAD" or b.ops[-1] is not op:
        return x, padding
    if b.readers_of(op.outputs[0]) != 1:
        return x, padding
    source = b.tensors[op.inputs[0]]
    pads = b.pad_values.get(op.index)
    for axis, (k, s) in enumerate(zip(kernel, stride), start=1):
        size = source.shape[axis]
        total = max((-(-size // s) - 1) * s + k - size, 0)
        if pads is None or pads[axis] != (total // 2, total - total // 2):
            return x, padding
    if any(pads[a] != (0, 0) for a in (0, 3)):
        return x, padding
    b.ops.pop()
    if not any(op.inputs[1] in o.inputs for o in b.ops):
        b.drop_constant(op.inputs[1])
    b.tensors[op.outputs[0]].shape, b.tensors[op.outputs[0]].name = [], ""
    producer = next((o for o in b.ops if source.index in o.outputs), None)
    return _Value(source.index, list(source.shape), producer), "same"


def _dense(b: GraphBuilder, name: str, config: dict, x: _Value) -> _Value:
    if len(x.shape) != 2:
        raise NeedsTensorFlow(f"layer {name}: a Dense on a rank-{len(x.shape)} tensor")
    units = int(config["units"])
    weights = b.constant(f"{name}/kernel", [units, x.shape[1]], None)
    bias = b.var(name, 1) if config.get("use_bias", True) else None
    if config.get("use_bias", True) and bias is None:
        raise NeedsTensorFlow(f"layer {name}: its bias is not in the weights file")
    inputs = [x.tensor, weights, -1]
    if bias is not None and np.any(bias):  # the converter drops an all-zero bias (measured)
        inputs[2] = b.constant(f"{name}/bias", [units], bias.astype(np.float32).tobytes())
    out = b.tensor(name, [1, units])
    value = _Value(out, [1, units], b.op("FULLY_CONNECTED", inputs, [out], activation="NONE"))
    return _apply_activation(b, name, _activation(config), value)


def _apply_activation(b: GraphBuilder, name: str, activation: str, value: _Value) -> _Value:
    if activation == "linear":
        return value
    if activation in FUSABLE and value.op is not None and value.op.opcode in _FUSING_OPS:
        value.op.options["activation"] = FUSABLE[activation]
        return value
    opcode = SEPARATE.get(activation) or FUSABLE.get(activation)
    if opcode is None:
        raise NeedsTensorFlow(f"layer {name}: activation {activation}")
    out = b.tensor(f"{name}/{activation}", value.shape)
    return _Value(out, value.shape, b.op(opcode, [value.tensor], [out]))


def _fold_batch_norm(b: GraphBuilder, name: str, config: dict, x: _Value, readers: dict[str, int]) -> _Value:
    """Folded into the conv before it when nothing else reads the conv: its bias becomes beta - mean*scale."""
    op = x.op
    conv_name = b.tensors[x.tensor].name
    if (op is None or op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or x.fused_bn
            or op.options.get("activation") != "NONE" or readers.get(conv_name, 0) != 1
            or op.outputs[0] != x.tensor or config.get("axis", -1) not in (-1, len(x.shape) - 1, [-1],
                                                                           [len(x.shape) - 1])):
        raise NeedsTensorFlow(f"layer {name}: a BatchNormalization not right after a conv")
    variables = [b.var(name, i) for i in range(4)]
    scale, center = config.get("scale", True), config.get("center", True)
    gamma = variables.pop(0) if scale else None
    beta = variables.pop(0) if center else None
    mean, variance = variables[0], variables[1]
    if mean is None or variance is None:
        raise NeedsTensorFlow(f"layer {name}: its statistics are not in the weights file")
    old = op.inputs[2]
    old_bias = b.var(conv_name, 1) if old >= 0 and b.tensors[old].name == f"{conv_name}/bias" else None
    factor = 1.0 / np.sqrt(variance.astype(np.float32) + np.float32(config.get("epsilon", 1e-3)))
    if gamma is not None:
        factor = factor * gamma
    folded = ((np.zeros_like(mean) if old_bias is None else old_bias) - mean) * factor + (0 if beta is None else beta)
    if old >= 0 and not any(old in o.inputs for o in b.ops if o is not op):  # the conv's own bias is gone
        b.drop_constant(old)
    if op.opcode == "FULLY_CONNECTED" and not np.any(folded):
        op.inputs[2] = -1  # as a Dense's all-zero bias, dropped
    else:
        op.inputs[2] = b.constant(f"{name}/bias", [x.shape[-1]], (folded.astype(np.float32) + 0.0).tobytes())
    b.tensors[x.tensor].name = name
    return _Value(x.tensor, x.shape, op, fused_bn=True)


def _activation_layer(b: GraphBuilder, kind: str, name: str, config: dict, x: _Value,
                      readers: dict[str, int]) -> _Value:
    if kind == "Softmax":
        activation = "softmax"
    elif kind == "ReLU":
        if float(config.get("negative_slope") or 0) or float(config.get("threshold") or 0):
            raise NeedsTensorFlow(f"layer {name}: a leaky or thresholded ReLU")
        max_value = config.get("max_value")
        if max_value not in (None, 6, 6.0):
            raise NeedsTensorFlow(f"layer {name}: ReLU(max_value={max_value})")
        activation = "relu" if max_value is None else "relu6"
    else:
        activation = _activation(config)
    if activation in FUSABLE and x.op is not None and x.op.opcode in _FUSING_OPS:
        producer = b.tensors[x.tensor].name
        if readers.get(producer, 0) != 1 or x.op.options.get("activation") != "NONE":
            raise NeedsTensorFlow(f"layer {name}: an activation whose input is read elsewhere")
        x.op.options["activation"] = FUSABLE[activation]
        b.tensors[x.tensor].name = name
        return _Value(x.tensor, x.shape, x.op)
    if activation in FUSABLE:  # after a pool, the input, a reshape..: whether the converter fuses it is unmeasured
        raise NeedsTensorFlow(f"layer {name}: a {activation} after a {x.op.opcode if x.op else 'model input'}")
    return _apply_activation(b, name, activation, _Value(x.tensor, x.shape, None))


def lint_keras_archive(path: Path, *, compiler: str, quant: str, shown: str):
    """`k210 lint model.keras` from the archive alone; NeedsTensorFlow when a layer needs the converter."""
    from .keras_layers import check_layers
    from .report import LintReport
    from .tflite_lint import lint_tflite

    archive = read_archive(path)
    try:
        info, shims = graph_from_archive(archive)
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # a config this reader does not know
        raise NeedsTensorFlow(f"its config holds what this reader does not know ({type(exc).__name__}: {exc})") \
            from None
    finally:
        if archive.weights is not None:
            archive.weights.close()
    findings = check_layers(_Model(shims), quant=quant)
    report: LintReport = lint_tflite(info, compiler=compiler, quant=quant, source=shown, format="keras")
    batch = (archive.layers[0].get("config", {}).get("batch_shape") or [None])[0]
    report.notes = [*(["dynamic batch fixed to 1"] if batch is None else []), *report.notes,
                    "linted from the .keras file's layer configs and weights, without TensorFlow"]
    report.findings, report.findings_title = findings, "Keras layers (before conversion)"
    return report


@dataclass
class _Model:
    layers: list
