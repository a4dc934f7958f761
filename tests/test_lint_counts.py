"""Issue 26: lint's KPU/CPU conv counts equal nncase 1.9's own schedule where they used to differ:
a conv that feeds a PReLU and another op (MediaPipe's hand_recrop: 49 against nncase's 55), and a
transposed conv in a float kmodel (nncase lowers it to pad + a CPU Conv2D)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from k210.converters.nncase_figures import nncase_figures
from k210.host.lint import lint_tflite
from k210.host.lint.confirm import lint_figures

pytestmark = pytest.mark.slow


def _hand_recrop() -> tuple[bytes, list[int]]:
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite

    spec = importlib.util.find_spec("mediapipe")
    assert spec is not None and spec.submodule_search_locations, "mediapipe is in requirements-data.txt"
    path = Path(spec.submodule_search_locations[0]) / "modules" / "holistic_landmark" / "hand_recrop.tflite"
    converted = convert_to_tflite(detect(path))
    return converted.data, converted.input_shape


def test_hand_recrop_conv_counts_match_nncase():
    data, shape = _hand_recrop()
    report = lint_tflite(data, quant="uint8")
    lint = lint_figures(report)
    # The depthwise conv and the residual Adds that feed a PReLU and a max pool: three KPUConv2D each.
    tripled = [op.name for op in report.ops if op.lowered_convs == 2 and op.op == "DEPTHWISE_CONV_2D"]
    assert tripled == ["batch_normalization"]
    real = nncase_figures(data, shape, quant="uint8")
    assert real.compiled, real.error
    assert (lint["kpu_convs"], lint["cpu_convs"]) == (real.kpu_convs, real.cpu_convs) == (55, 9)


def test_transposed_conv_in_a_float_kmodel_counts_as_a_cpu_conv():
    import keras

    from k210.converters.to_tflite import keras_to_tflite

    inp = keras.Input((16, 16, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2DTranspose(8, 3, strides=1, padding="same", activation="relu")(x)
    converted = keras_to_tflite(keras.Model(inp, keras.layers.Conv2D(4, 1)(x)))
    for quant in ("float", "uint8"):
        lint = lint_figures(lint_tflite(converted.data, quant=quant))
        real = nncase_figures(converted.data, converted.input_shape, quant=quant)
        assert real.compiled, real.error
        assert (lint["kpu_convs"], lint["cpu_convs"]) == (real.kpu_convs, real.cpu_convs), quant


@pytest.mark.parametrize("size, filters, compiles", [(3, 8, False), (4, 8, True), (8, 1024, True), (8, 1025, False)])
def test_transposed_conv_limits_follow_nncase(size, filters, compiles):
    """Below a 4x4 map or above 1024 output channels nncase 1.9 does not lower a stride-1 transposed conv and
    has no CPU kernel for it ('Emitter for ...[Conv2DTranspose] is not found'): lint must refuse it then."""
    import keras

    from k210.converters.to_tflite import keras_to_tflite

    inp = keras.Input((size, size, 4))
    converted = keras_to_tflite(keras.Model(inp, keras.layers.Conv2DTranspose(filters, 3, padding="same")(inp)))
    report = lint_tflite(converted.data, quant="uint8")
    real = nncase_figures(converted.data, converted.input_shape, quant="uint8")
    assert real.compiled is compiles, real.error
    assert report.ok is compiles, report.problems
    if not compiles:
        assert "Conv2DTranspose" in real.error and "Conv2DTranspose" in report.problems[0]
