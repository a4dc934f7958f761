"""Lint's SRAM estimate against nncase 1.9's memory summary on a small residual PReLU net.

Residual and PReLU nets are where nncase's data pool holds more than one op's buffers: a PReLU runs its
max/min/mul on the CPU in float32 and concatenates both halves for a KPU conv, and a residual Add keeps
its float32 concat alive while the other branch runs. The net below has both (the PReLU patterns of
MediaPipe's landmark models and ResNet-8's stride-2 block with a 1x1 shortcut); nncase compiles it in a
child process (converters.nncase_figures) in about a second.
"""

from __future__ import annotations

import pytest

from k210.converters.nncase_figures import nncase_figures
from k210.host.lint import lint_tflite


def _residual_prelu_net():
    import keras

    layers = keras.layers
    inp = keras.Input((64, 64, 3), batch_size=1)
    x = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(16, 3, strides=2, padding="same")(inp))
    y = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(16, 3, padding="same")(x))
    y = layers.Conv2D(16, 3, padding="same")(y)
    x = layers.PReLU(shared_axes=[1, 2])(layers.add([x, y]))  # shortcut first, as Keras' ResNets do
    shortcut = layers.Conv2D(32, 1, strides=2)(x)
    y = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    y = layers.Conv2D(32, 3, padding="same")(y)
    x = layers.ReLU()(layers.add([shortcut, y]))
    return keras.Model(inp, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))


@pytest.fixture(scope="module")
def compiled() -> tuple[dict, dict]:
    from k210.converters.to_tflite import keras_to_tflite

    converted = keras_to_tflite(_residual_prelu_net())
    figures = nncase_figures(converted.data, converted.input_shape)
    assert figures.compiled, figures.error
    return lint_tflite(converted.data).memory, figures.memory


def test_total_is_within_10_percent_of_nncase_total(compiled):
    lint, nncase = compiled
    assert 0.9 <= lint["total_bytes"] / nncase["total"] <= 1.1, (lint, nncase)


def test_working_memory_is_within_10_percent_of_nncase_data_pool(compiled):
    """The PReLU on the first 32x32x16 map, inside the first residual branch, is the peak of both."""
    lint, nncase = compiled
    assert 0.9 <= lint["working_bytes"] / nncase["data"] <= 1.1, (lint, nncase)
    assert lint["working_peak_op"]["op"] == "PRELU"


def test_model_is_within_10_percent_of_the_kmodel(compiled):
    """nncase's MODEL is the kmodel: uint8 KPU weights plus its per-conv tables and the lowered Add/PReLU
    convs' weights, float32 weights on the CPU."""
    lint, nncase = compiled
    assert 0.9 <= lint["model_bytes"] / nncase["model"] <= 1.1, (lint, nncase)
