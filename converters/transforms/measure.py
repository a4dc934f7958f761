"""Per-channel figures of a float TFLite model's tensors over sample inputs (one interpreter, one input
at a time, so big feature maps never pile up in memory)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ChannelRanges:
    low: np.ndarray  # [C] the smallest value each channel took
    high: np.ndarray  # [C] the largest

    @property
    def spans(self) -> np.ndarray:
        return self.high - self.low

    def spread(self) -> float:
        """max channel range / median channel range: how far one channel sets the per-tensor step. Dead
        channels (range 0) carry nothing to lose and are left out of the median (and the figure stays finite
        for JSON)."""
        live = self.spans[self.spans > 0]
        return float(live.max() / np.median(live)) if len(live) else 1.0


def _interpreter(tflite: bytes):
    import tensorflow as tf

    from k210.core.quiet import captured_output

    with captured_output():
        interpreter = tf.lite.Interpreter(model_content=tflite, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
    return interpreter


def run_each(tflite: bytes, inputs: np.ndarray, tensors: list[int]):
    """Yield {tensor: value without its batch axis} for each input."""
    interpreter = _interpreter(tflite)
    detail = interpreter.get_input_details()[0]
    for x in inputs:
        interpreter.set_tensor(detail["index"], np.asarray(x, np.float32).reshape(detail["shape"]))
        interpreter.invoke()
        yield {t: np.array(interpreter.get_tensor(t))[0] for t in tensors}


def channel_ranges(tflite: bytes, inputs: np.ndarray, tensors: list[int]) -> dict[int, ChannelRanges]:
    """Per-channel (last axis) min and max of each tensor over the inputs."""
    found: dict[int, ChannelRanges] = {}
    for values in run_each(tflite, inputs, tensors):
        for t, v in values.items():
            if v.ndim == 0 or v.size == 0:
                continue
            flat = v.reshape(-1, v.shape[-1]).astype(np.float64)
            low, high = flat.min(axis=0), flat.max(axis=0)
            if t in found:
                found[t] = ChannelRanges(np.minimum(found[t].low, low), np.maximum(found[t].high, high))
            else:
                found[t] = ChannelRanges(low, high)
    return found


def mean_values(tflite: bytes, inputs: np.ndarray, tensors: list[int]) -> dict[int, np.ndarray]:
    """Each tensor's mean over the inputs, position by position (E[x] for bias correction)."""
    sums: dict[int, np.ndarray] = {}
    count = 0
    for values in run_each(tflite, inputs, tensors):
        count += 1
        for t, v in values.items():
            sums[t] = sums[t] + v.astype(np.float64) if t in sums else v.astype(np.float64)
    return {t: s / max(count, 1) for t, s in sums.items()}


def outputs(tflite: bytes, inputs: np.ndarray) -> list[np.ndarray]:
    """The model's outputs for each input: one array [N, ...] per output."""
    interpreter = _interpreter(tflite)
    detail = interpreter.get_input_details()[0]
    collected: list[list[np.ndarray]] = [[] for _ in interpreter.get_output_details()]
    for x in inputs:
        interpreter.set_tensor(detail["index"], np.asarray(x, np.float32).reshape(detail["shape"]))
        interpreter.invoke()
        for i, out in enumerate(interpreter.get_output_details()):
            collected[i].append(np.array(interpreter.get_tensor(out["index"])))
    return [np.stack(c) for c in collected]


def relative_difference(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    """max over outputs of ||a - b|| / ||a||: how far a transformed model's float outputs moved."""
    worst = 0.0
    for a, b in zip(reference, other):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        norm = float(np.linalg.norm(a64))
        diff = float(np.linalg.norm(a64 - b64))
        worst = max(worst, diff / norm if norm > 0 else diff)
    return worst
