"""Cross-layer equalisation and high-bias absorption (Nagel et al., ICCV 2019, sections 4.1 and 4.2).

For a pair first -> (ReLU or nothing) -> second, scaling first's output channel c by 1/s_c (weights and
bias) and second's input channel c by s_c leaves the float model unchanged, because relu(x / s) =
relu(x) / s for s > 0. The K210 quantises every activation tensor and every KPU conv's weights with
one scale, so a channel whose range is far above its siblings' spends the uint8 steps of all of them;
equalising brings those ranges together. ReLU6 does not commute with a per-channel scale (its bound 6
would have to become 6 / s_c), so such pairs are left alone and reported.

Scales: with calibration data, from the channels' measured activation peaks a_c (what the K210's
per-tensor activation step depends on): s_c = k * sqrt(a_c / r2_c), r2_c the second layer's input
channel weight range, k so that the second layer's largest weight range stays what it was; s_c is
kept >= r1_c / R1 so that no channel of the first layer's weights outgrows the layer's old maximum.
Without data, the paper's weights-only rule s_c = sqrt(r1_c / r2_c).

High-bias absorption moves a constant c_c out of the first layer's bias into the second's:
first's channel c gets b - c_c, second's bias gets W2 . c. Exact where nothing clips in between
(no activation: c_c is the channel's mid-range, which centres every channel on 0), and for a ReLU
exact whenever the channel stays above c_c (c_c = the smallest value the channel took on the
calibration data). Only into a consumer that sees the same shift at every position: a 1x1 conv,
VALID padding or a fully connected layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import graph as g
from .measure import channel_ranges

_TINY = 1e-12


@dataclass
class PairChange:
    first: str
    second: str
    activation: str
    scale_min: float = 1.0
    scale_max: float = 1.0
    absorbed: float = 0.0  # largest |c_c| moved into the second layer's bias

    def describe(self) -> dict:
        return {"first": self.first, "second": self.second, "activation": self.activation,
                "scale_min": self.scale_min, "scale_max": self.scale_max, "absorbed_max": self.absorbed}


@dataclass
class EqualizeReport:
    pairs: list[PairChange] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sweeps: int = 0
    basis: str = "activations"


def equalize(model: g.Model, calibration: np.ndarray | None, *, sweeps: int = 3,
             report: EqualizeReport | None = None) -> EqualizeReport:
    """Cross-layer equalisation of every pair find_pairs offers, `sweeps` times (a chain of pairs
    settles over repeated sweeps; the activation ranges are measured again before each)."""
    report = report or EqualizeReport()
    pairs, skipped = g.find_pairs(model)
    report.skipped.extend(skipped)
    report.basis = "activations" if calibration is not None and len(calibration) else "weights"
    changes = {(p.first.index, p.second.index): PairChange(p.first.name, p.second_names, p.activation) for p in pairs}
    rounds = sweeps if report.basis == "activations" else max(sweeps, 20)
    for _ in range(rounds):
        peaks = _peaks(model, calibration, [p.tensor for p in pairs]) if report.basis == "activations" else {}
        for pair in pairs:
            scale = _scales(model, pair, peaks.get(pair.tensor))
            _apply_scale(model, pair, scale)
            change = changes[(pair.first.index, pair.second.index)]
            change.scale_min = min(change.scale_min, float(scale.min()))
            change.scale_max = max(change.scale_max, float(scale.max()))
        report.sweeps += 1
    report.pairs = list(changes.values())
    return report


def relu6_to_relu(model: g.Model, calibration: np.ndarray, *, margin: float = 0.99) -> list[dict]:
    """Nagel et al.'s step for MobileNetV2: a fused ReLU6 in front of a layer it could pair with becomes a
    ReLU when no channel came within `margin` of 6 on the calibration data (there the two agree; an input
    that would reach 6 is no longer clipped). Returns the layers changed and their peak."""
    candidates = []
    for op in model.weighted.values():
        reader = model.single_reader(op.out)
        if op.activation == "relu6" and reader in model.weighted and model.weighted[reader].x == op.out:
            candidates.append(op)
    if not candidates:
        return []
    ranges = channel_ranges(model.to_bytes(), calibration, [op.out for op in candidates])
    changed = []
    for op in candidates:
        peak = float(ranges[op.out].high.max())
        if peak < 6.0 * margin:
            model.op_options(op.index).fusedActivationFunction = 1  # RELU
            op.activation = "relu"
            changed.append({"layer": op.name, "peak": peak})
    return changed


def absorb_high_bias(model: g.Model, calibration: np.ndarray, report: EqualizeReport) -> EqualizeReport:
    """Move each pair's channel offsets into the next layer's bias (see the module's note)."""
    pairs, _ = g.find_pairs(model)
    usable = []
    for pair in pairs:
        if pair.first.bias < 0 or not model.writable(pair.first.bias):
            continue
        if any(c.bias < 0 or not model.writable(c.bias) for c in pair.consumers):
            report.skipped.append(f"{pair.first.name} -> {pair.second_names}: no bias of its own to absorb into")
            continue
        if not all(g.kernel_is_pointwise(model, c, model.constant(c.weights)) for c in pair.consumers):
            continue  # SAME padding: a shift of the input is not a shift of every output position
        usable.append(pair)
    if not usable:
        return report
    ranges = channel_ranges(model.to_bytes(), calibration, [p.tensor for p in usable])
    by_pair = {(c.first, c.second): c for c in report.pairs}
    for pair in usable:
        span = ranges[pair.tensor]
        shift = (span.low + span.high) / 2 if pair.activation == "none" else np.maximum(span.low, 0.0)
        if not np.any(shift):
            continue
        b1 = model.constant(pair.first.bias)
        model.set_constant(pair.first.bias, (b1 - shift).astype(np.float32))
        for consumer in pair.consumers:
            w2 = model.constant(consumer.weights).astype(np.float64)
            b2 = model.constant(consumer.bias).astype(np.float64)
            model.set_constant(consumer.bias, (b2 + _weights_times(model, consumer, w2, shift)).astype(np.float32))
        change = by_pair.setdefault((pair.first.name, pair.second_names),
                                    PairChange(pair.first.name, pair.second_names, pair.activation))
        if change not in report.pairs:
            report.pairs.append(change)
        change.absorbed = max(change.absorbed, float(np.abs(shift).max()))
    return report


def _weights_times(model: g.Model, op: g.WeightedOp, w: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """What a constant input `shift` (per input channel) adds to each output channel of `op`."""
    if op.is_depthwise:
        per_out = w.reshape(-1, w.shape[-1]).sum(axis=0)
        return per_out * np.repeat(shift, g.depth_multiplier(model, op))
    return w.reshape(w.shape[0], -1, w.shape[-1]).sum(axis=1) @ shift


def _peaks(model: g.Model, calibration: np.ndarray, tensors: list[int]) -> dict[int, np.ndarray]:
    ranges = channel_ranges(model.to_bytes(), calibration, sorted(set(tensors)))
    return {t: np.maximum(np.abs(r.low), np.abs(r.high)) for t, r in ranges.items()}


def _scales(model: g.Model, pair: g.Pair, peaks: np.ndarray | None) -> np.ndarray:
    r1 = g.out_channel_ranges(pair.first, model.constant(pair.first.weights)).astype(np.float64)
    r2 = np.max([g.in_channel_ranges(c, model.constant(c.weights), g.depth_multiplier(model, c))
                 for c in pair.consumers], axis=0).astype(np.float64)  # several consumers: the widest sets it
    if peaks is None:
        live = (r1 > _TINY) & (r2 > _TINY)
        return np.where(live, np.sqrt(np.where(live, r1, 1) / np.where(live, r2, 1)), 1.0)
    live = (peaks > _TINY) & (r2 > _TINY)
    raw = np.where(live, np.sqrt(np.where(live, peaks, 1) / np.where(live, r2, 1)), 0.0)
    if not live.any():
        return np.ones_like(r1)
    k = r2.max() / float((r2 * raw)[live].max())
    scale = np.where(live, raw * k, 1.0)
    floor = r1 / max(float(r1.max()), _TINY)  # no first-layer channel may outgrow the layer's old largest
    return np.maximum(scale, np.where(live, floor, 0.0))


def _apply_scale(model: g.Model, pair: g.Pair, scale: np.ndarray) -> None:
    first = pair.first
    model.set_constant(first.weights, g.scale_out_channels(first, model.constant(first.weights).astype(np.float64),
                                                           1.0 / scale).astype(np.float32))
    if first.bias >= 0:
        model.set_constant(first.bias, (model.constant(first.bias).astype(np.float64) / scale).astype(np.float32))
    for consumer in pair.consumers:
        model.set_constant(consumer.weights, g.scale_in_channels(
            consumer, model.constant(consumer.weights).astype(np.float64), scale,
            g.depth_multiplier(model, consumer)).astype(np.float32))
