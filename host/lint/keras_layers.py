"""Layer-level check of a Keras model, before any conversion: what each layer will become and
whether nncase 1.9 / the KPU can take it. The TFLite-level check after conversion is the
authority; this table tells the user which *layer* to change."""

from __future__ import annotations

from k210.converters.kpu_rules import (
    KPU_FILTERS,
    KPU_MAX_C,
    KPU_MAX_H,
    KPU_MAX_W,
    NEEDS_PTQ,
    UNSUPPORTED_FIXES,
    kernel_advice,
)

from .report import Finding

REMOVED_AT_INFERENCE = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "InputLayer",
})
# activation name -> (verdict, what it becomes / why)
ACTIVATIONS = {
    "linear": ("ok", "no op"),
    "relu": ("ok", "RELU, fused into the layer"),
    "relu6": ("ok", "RELU6, fused into the layer"),
    "sigmoid": ("ok", "LOGISTIC"),
    "tanh": ("ok", "TANH"),
    "softmax": ("ok", "SOFTMAX on the CPU"),
    "log_softmax": ("ok", "LOG_SOFTMAX on the CPU"),
    "leaky_relu": ("ok", "LEAKY_RELU"),
    "hard_swish": ("ok", "HARD_SWISH"),
    "hard_silu": ("ok", "HARD_SWISH"),
    "silu": ("ok", "LOGISTIC + MUL"),
    "swish": ("ok", "LOGISTIC + MUL"),
    "softplus": ("ok", "EXP + ADD + LOG on the CPU"),
    "softsign": ("ok", "ABS + ADD + DIV on the CPU"),
    "mish": ("ok", "EXP/LOG/TANH/MUL on the CPU"),
    "exponential": ("ok", "EXP on the CPU"),
    "hard_sigmoid": ("ok", "ADD + MUL + clamp on the CPU"),
    "elu": ("unsupported", "becomes ELU, which nncase 1.9 cannot import ('Unsupported tflite opcode: ELU')"),
    "gelu": ("unsupported", "becomes GELU, which nncase 1.9 cannot import (blank-named 'Unsupported tflite opcode')"),
    "selu": ("unsupported", "becomes SELECT (tf.where), which nncase 1.9 cannot import"),
}
RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
                       "LSTMCell", "GRUCell", "TimeDistributed"})
CPU_LAYERS = {
    "Flatten": "RESHAPE (batch fixed to 1, so it folds into a constant reshape)",
    "Reshape": "RESHAPE",
    "Permute": "TRANSPOSE on the CPU",
    "ZeroPadding2D": "PAD on the CPU",
    "Cropping2D": "STRIDED_SLICE on the CPU",
    "GlobalAveragePooling2D": "MEAN on the CPU",
    "GlobalMaxPooling2D": "REDUCE_MAX on the CPU",
    "Concatenate": "CONCATENATION on the CPU",
    "Multiply": "MUL on the CPU",
    "Subtract": "SUB on the CPU",
    "Maximum": "MAXIMUM on the CPU",
    "Minimum": "MINIMUM on the CPU",
    "Average": "ADD + MUL on the CPU",
    "Softmax": "SOFTMAX on the CPU",
    "LayerNormalization": "MEAN/SQUARED_DIFFERENCE/RSQRT/MUL/ADD on the CPU",
    "UpSampling2D": "RESHAPE/TILE (nearest) or RESIZE_BILINEAR on the CPU",
    "Rescaling": "MUL + ADD on the CPU (or do it on the board before the model)",
    "Normalization": "SUB + MUL on the CPU",
}


def check_layers(model, *, quant: str = "uint8") -> list[Finding]:
    """One finding per layer of a Keras model (nested models are walked)."""
    findings: list[Finding] = []
    for layer in _walk(model):
        finding = check_layer(layer, quant=quant)
        if finding.kind in ("MaxPooling2D", "AveragePooling2D") and finding.verdict == "kpu":
            previous = next((f for f in reversed(findings) if f.verdict != "removed"), None)
            if previous is None or previous.kind not in ("Conv2D", "SeparableConv2D") or previous.verdict != "kpu":
                finding.verdict = "cpu"
                finding.reason = finding.reason.split(":")[0] + ": not right after a KPU conv, so it cannot fuse"
        findings.append(finding)
    return findings


def _walk(model):
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and type(layer).__name__ in ("Sequential", "Functional", "Model"):
            yield from _walk(layer)
        else:
            yield layer


def check_layer(layer, *, quant: str = "uint8") -> Finding:
    kind = type(layer).__name__
    config = _config(layer)
    name = getattr(layer, "name", kind)

    def finding(verdict: str, reason: str, fix: str | None = None) -> Finding:
        return Finding(name, kind, verdict, reason, fix)

    if kind in REMOVED_AT_INFERENCE:
        return finding("removed", "does nothing at inference; the converter drops it")
    if kind in RECURRENT:
        return finding("unsupported", "a recurrent layer becomes a WHILE loop (UNPACK when unrolled), which nncase "
                                      "cannot import", UNSUPPORTED_FIXES["WHILE"])
    if kind in ("Conv3D", "Conv3DTranspose", "MaxPooling3D", "AveragePooling3D"):
        op = {"Conv3D": "CONV_3D", "Conv3DTranspose": "CONV_3D_TRANSPOSE"}.get(kind, "a 3-D pool")
        return finding("unsupported", f"becomes {op}, which nncase cannot import", UNSUPPORTED_FIXES["CONV_3D"])
    if kind == "Embedding":
        return finding("unsupported", "its index handling becomes CAST/LESS/SELECT/GATHER; nncase cannot import "
                                      "SELECT", "do the lookup on the host and feed the vectors")
    if kind == "ELU":
        return finding("unsupported", ACTIVATIONS["elu"][1], UNSUPPORTED_FIXES["ELU"])
    activation = _activation_problem(config)
    if activation is not None:
        return finding("unsupported", f"activation {activation[0]}: {activation[1]}",
                       UNSUPPORTED_FIXES.get(activation[0].upper()))
    if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv1D"):
        return _conv_finding(layer, kind, config, quant, finding)
    if kind == "Conv2DTranspose":
        return _transpose_conv_finding(config, quant, finding)
    if kind == "Dense":
        return _dense_finding(layer, config, quant, finding)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        pool, strides = _pair(config.get("pool_size")), _pair(config.get("strides") or config.get("pool_size"))
        size = f"{pool[0]}x{pool[1]}/s{strides[0]}"
        if quant != "uint8":
            return finding("cpu", f"{size} pool: {NEEDS_PTQ}")
        if pool[0] == pool[1] and strides[0] == strides[1] and (pool[0], strides[0]) in ((2, 2), (2, 1), (4, 4)):
            return finding("kpu", f"{size} pool: fuses into the KPU conv right before it")
        return finding("cpu", f"{size} pool: the KPU pools only 2x2/s2, 2x2/s1, 4x4/s4")
    if kind == "BatchNormalization":
        return finding("ok", "folded into the conv before it, or MUL + ADD on the CPU")
    if kind in ("ReLU", "LeakyReLU", "Activation", "PReLU", "Softmax"):
        return _activation_layer_finding(kind, config, quant, finding)
    if kind == "Add":
        return finding("kpu-partial" if quant == "uint8" else "cpu",
                       "ADD; two same-shape 4-D maps are lowered to concat + 1x1 KPU conv" if quant == "uint8"
                       else f"ADD: {NEEDS_PTQ}")
    if kind in CPU_LAYERS:
        return finding("cpu", CPU_LAYERS[kind])
    if kind in ("Lambda", "TFOpLambda"):
        return finding("unchecked", "custom code: checked at the TFLite op level only")
    return finding("unchecked", f"{kind} is not checked at the layer level: see the TFLite ops")


def _config(layer) -> dict:
    try:
        return dict(layer.get_config())
    except Exception:  # a custom layer without get_config
        return {}


def _activation_name(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # serialised activation object
        return str(value.get("config", {}).get("name") or value.get("class_name") or "")
    return getattr(value, "__name__", str(value))


def _activation_problem(config: dict) -> tuple[str, str] | None:
    name = _activation_name(config.get("activation"))
    if name and ACTIVATIONS.get(name, ("ok", ""))[0] == "unsupported":
        return name, ACTIVATIONS[name][1]
    return None


def _pair(value) -> tuple[int, int]:
    if value is None:
        return (1, 1)
    if isinstance(value, int):
        return (value, value)
    values = list(value)
    return (int(values[0]), int(values[-1])) if values else (1, 1)


def _shape(tensor_owner, attribute: str) -> list | None:
    try:
        return list(getattr(tensor_owner, attribute).shape)
    except Exception:  # layer not built or shared
        return None


def _conv_finding(layer, kind: str, config: dict, quant: str, finding) -> Finding:
    kernel = _pair(config.get("kernel_size"))
    strides = _pair(config.get("strides"))
    dilation = _pair(config.get("dilation_rate"))
    if kind == "Conv1D":
        kernel = (1, kernel[0])
    if kind == "DepthwiseConv2D" and int(config.get("depth_multiplier", 1)) != 1:
        in_shape = _shape(layer, "input")
        if not in_shape or in_shape[-1] != 1:
            return finding("unsupported", f"depth_multiplier {config['depth_multiplier']}: nncase 1.9 refuses it",
                           "use depth_multiplier 1 followed by a 1x1 Conv2D")
    label = f"{kernel[0]}x{kernel[1]} {kind}"
    if quant != "uint8":
        return finding("cpu", f"{label}: {NEEDS_PTQ}")
    if kernel[0] != kernel[1] or kernel[0] not in KPU_FILTERS:
        reason, fix = kernel_advice(*kernel)
        return finding("cpu", f"{kind} {reason}", fix)
    in_shape = _shape(layer, "input")
    if in_shape and len(in_shape) == 4 and None not in in_shape[1:]:
        _, h, w, c = in_shape
        if h > KPU_MAX_H or w > KPU_MAX_W or c > KPU_MAX_C:
            return finding("cpu", f"{label} on a {h}x{w}x{c} map: beyond the KPU's {KPU_MAX_W}x{KPU_MAX_H}x{KPU_MAX_C}")
    notes = []
    if strides != (1, 1):
        notes.append(f"stride {strides[0]} becomes a stride-1 KPU conv + subsampling")
    if dilation != (1, 1):
        notes.append(f"dilation {dilation[0]} is lowered with space-to-batch")
    if kind == "SeparableConv2D":
        notes.append("depthwise + 1x1 pointwise, both KPU convs")
    verdict = "kpu-partial" if dilation != (1, 1) or (strides != (1, 1) and kind == "DepthwiseConv2D") else "kpu"
    return finding(verdict, f"{label}: KPU conv" + ("; " + "; ".join(notes) if notes else ""))


def _transpose_conv_finding(config: dict, quant: str, finding) -> Finding:
    kernel, strides = _pair(config.get("kernel_size")), _pair(config.get("strides"))
    if strides != (1, 1) or config.get("padding") != "same" or kernel[0] != kernel[1] or kernel[0] not in KPU_FILTERS:
        return finding("unsupported", f"{kernel[0]}x{kernel[1]}/s{strides[0]} {config.get('padding')}: nncase 1.9 "
                                      "compiles only stride-1 'same' 1x1/3x3 transposed convs",
                       "use UpSampling2D followed by a 3x3 Conv2D")
    if quant != "uint8":
        return finding("cpu", f"transposed conv: {NEEDS_PTQ}")
    return finding("kpu-partial", "stride-1 transposed conv: lowered to pad + KPU conv")


def _dense_finding(layer, config: dict, quant: str, finding) -> Finding:
    units = int(config.get("units", 0))
    in_shape = _shape(layer, "input")
    in_features = in_shape[-1] if in_shape else None
    if quant != "uint8":
        return finding("cpu", f"Dense: {NEEDS_PTQ}")
    if in_features is not None and in_features > KPU_MAX_C:
        return finding("cpu", f"{in_features} input features > {KPU_MAX_C}: stays a CPU MatMul (float32 weights)",
                       f"shrink the features entering this Dense to <= {KPU_MAX_C}")
    if units > KPU_MAX_C:
        return finding("cpu", f"{units} units > {KPU_MAX_C}: stays a CPU MatMul", f"use at most {KPU_MAX_C} units")
    activation = _activation_name(config.get("activation")) or "linear"
    fused = f", {activation} fused" if activation not in ("linear", "softmax") else ""
    tail = "; softmax on the CPU" if activation == "softmax" else ""
    return finding("kpu-partial", f"FULLY_CONNECTED -> 1x1 KPU conv with pad to 4x4 + crop{fused}{tail}")


def _activation_layer_finding(kind: str, config: dict, quant: str, finding) -> Finding:
    if kind == "PReLU":
        return finding("cpu", "PReLU does not fuse into the KPU conv's activation table",
                       "use ReLU or LeakyReLU to keep it fused")
    if kind == "Softmax":
        return finding("cpu", "SOFTMAX on the CPU")
    if kind == "ReLU":
        max_value = config.get("max_value")
        if max_value is not None and float(max_value) != 6.0:
            return finding("cpu", f"ReLU(max_value={max_value}) becomes RELU + MINIMUM: the clamp runs on the CPU",
                           "use ReLU or ReLU6 to keep it fusable")
        verdict = "kpu" if quant == "uint8" else "cpu"
        return finding(verdict, "fuses into the KPU conv before it" if quant == "uint8" else NEEDS_PTQ)
    name = "leaky_relu" if kind == "LeakyReLU" else _activation_name(config.get("activation")) or "linear"
    state, becomes = ACTIVATIONS.get(name, ("unchecked", "checked at the TFLite level"))
    if state == "unsupported":
        return finding("unsupported", becomes, UNSUPPORTED_FIXES.get(name.upper()))
    return finding("ok" if state == "ok" else state, f"{name}: {becomes}")
