"""Empirical bias correction (Nagel et al., ICCV 2019, section 4.2, from calibration data).

Quantising a layer's weights to W~ = W + dW shifts its output's expected value by E[conv(x, dW)] =
conv(E[x], dW) (convolution is linear); the bias takes that shift back, channel by channel. E[x] is
measured on the calibration data in the float model. dW is what the K210 does to a KPU conv's weights:
one uint8 scale for the whole layer, its range including 0. Only the convs nncase 1.9 puts on the KPU
(1x1 and 3x3 kernels, depth multiplier 1) are corrected: a CPU layer keeps float weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import graph as g
from .measure import mean_values


@dataclass
class BiasReport:
    layers: list[dict] = field(default_factory=list)  # {"layer", "largest_shift", "relative"}


def per_tensor_uint8(w: np.ndarray) -> np.ndarray:
    """W as the K210 stores it (one asymmetric uint8 scale, range widened to hold 0), dequantised."""
    low, high = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    if high - low <= 0:
        return w.copy()
    step = (high - low) / 255.0
    zero = round(-low / step)
    return (np.clip(np.round(w / step) + zero, 0, 255) - zero) * step


def kpu_conv(model: g.Model, op: g.WeightedOp) -> bool:
    w = model.constant(op.weights)
    if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D") or w is None or w.shape[1:3] not in ((1, 1), (3, 3)):
        return False
    return g.depth_multiplier(model, op) == 1


def correct_bias(model: g.Model, calibration: np.ndarray) -> BiasReport:
    report = BiasReport()
    ops = [op for op in model.weighted.values() if kpu_conv(model, op) and op.bias >= 0
           and model.writable(op.bias) and model.writable(op.weights)]
    if not ops:
        return report
    means = mean_values(model.to_bytes(), calibration, sorted({op.x for op in ops}))
    for op in ops:
        w = model.constant(op.weights).astype(np.float64)
        shift = _expected_shift(model, op, means[op.x], per_tensor_uint8(w) - w)
        if shift is None:
            continue
        bias = model.constant(op.bias).astype(np.float64)
        model.set_constant(op.bias, (bias - shift).astype(np.float32))
        scale = float(np.abs(w).max()) or 1.0
        report.layers.append({"layer": op.name, "largest_shift": float(np.abs(shift).max()),
                              "relative_to_weights": float(np.abs(shift).max()) / scale})
    return report


def _expected_shift(model: g.Model, op: g.WeightedOp, mean_x: np.ndarray, dw: np.ndarray) -> np.ndarray | None:
    """conv(E[x], dW), averaged over positions: one figure per output channel."""
    import tensorflow as tf

    options = model.op_options(op.index)
    strides = [1, int(options.strideH or 1), int(options.strideW or 1), 1]
    dilations = [int(getattr(options, "dilationHFactor", 1) or 1), int(getattr(options, "dilationWFactor", 1) or 1)]
    padding = "VALID" if int(options.padding or 0) == 1 else "SAME"
    x = tf.constant(mean_x[None], tf.float64)
    if op.is_depthwise:
        if strides[1] > 1 and max(dilations) > 1:
            return None
        kernel = dw.reshape(dw.shape[1], dw.shape[2], -1, 1)
        y = tf.nn.depthwise_conv2d(x, tf.constant(kernel), strides, padding, dilations=dilations)
    else:
        kernel = np.transpose(dw, (1, 2, 3, 0))  # OHWI -> HWIO
        y = tf.nn.conv2d(x, tf.constant(kernel), strides, padding, dilations=dilations)
    return y.numpy().reshape(-1, y.shape[-1]).mean(axis=0)
