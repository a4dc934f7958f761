"""Float16-weight TFLite models become float32 ones that compute the same thing and that lint passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from k210.converters.dequantize import count_float16_weights, dequantize_float16_bytes, dequantize_float16_weights
from k210.converters.tflite_reader import read_tflite
from k210.core.errors import BadInputError


def _interpret(data: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=data)
    interpreter.allocate_tensors()
    for detail, x in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


@pytest.fixture(scope="module")
def float16_conv_model() -> bytes:
    """A two-output Keras model (conv branch + dense head) converted with float16 weights."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((12, 12, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, [keras.layers.Dense(4)(pooled), keras.layers.Conv2D(2, 1)(x)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


def test_folded_model_gives_the_interpreters_outputs(float16_conv_model: bytes) -> None:
    before = read_tflite(float16_conv_model)
    assert "DEQUANTIZE" in {op.opcode for op in before.ops}
    assert count_float16_weights(float16_conv_model) > 0
    result = dequantize_float16_bytes(float16_conv_model)
    after = read_tflite(result.data)
    assert result.folded == count_float16_weights(float16_conv_model)
    assert "DEQUANTIZE" not in {op.opcode for op in after.ops}
    assert not [t for t in after.tensors if t.dtype == "float16"]
    assert len(after.outputs) == len(before.outputs) == 2
    x = np.random.default_rng(3).uniform(-1, 1, (1, 12, 12, 3)).astype(np.float32)
    for want, got in zip(_interpret(float16_conv_model, [x]), _interpret(result.data, [x])):
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert count_float16_weights(result.data) == 0
    assert dequantize_float16_bytes(result.data).folded == 0  # a float model passes through


def test_file_api_writes_atomically(tmp_path: Path, float16_conv_model: bytes) -> None:
    src = tmp_path / "m.tflite"
    src.write_bytes(float16_conv_model)
    dst = dequantize_float16_weights(src, tmp_path / "m_f32.tflite")
    assert dst.read_bytes()[4:8] == b"TFL3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m_f32.tflite"]


def test_not_a_tflite_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="TFL3"):
        dequantize_float16_bytes(b"not a model at all")
    truncated = tmp_path / "t.tflite"
    truncated.write_bytes(b"\x00\x00\x00\x00TFL3" + b"\x00" * 4)
    with pytest.raises(BadInputError):
        dequantize_float16_weights(truncated, tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists()


def test_compile_takes_a_float16_tflite(tmp_path: Path, cli) -> None:
    """`k210 compile` folds the float16 weights itself instead of refusing the model."""
    import json

    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((8, 8, 1), batch_size=1), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    src = tmp_path / "f16.tflite"
    src.write_bytes(bytes(converter.convert()))
    assert count_float16_weights(src.read_bytes()) > 0
    result = cli("compile", src, "--quant", "float", "-o", tmp_path / "f16.kmodel")
    assert result.code == 0, result.err
    card = json.loads((tmp_path / "f16.kmodel.json").read_text())
    assert any("float16 weights dequantised" in note for note in card["notes"])
