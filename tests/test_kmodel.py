"""converters.kmodel against kmodels nncase 1.9 really produces, and hand-built v3/v4 headers."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from k210.converters.kmodel import parse_kmodel
from k210.core.errors import BadInputError


def _compile_keras(model, quant: str) -> bytes:
    from k210.converters.compile import CompileSpec, compile_tflite
    from k210.converters.to_tflite import keras_to_tflite

    tfl = keras_to_tflite(model)
    spec = CompileSpec(quant=quant, input_type="uint8" if quant == "uint8" else "float32", input_shape=tfl.input_shape)
    if quant == "uint8":
        spec.calibration = np.random.default_rng(0).integers(0, 256, (4, *tfl.input_shape[1:]), dtype=np.uint8)
    return compile_tflite(tfl.data, spec).kmodel


@pytest.fixture(scope="module")
def prelu_conv_kmodel() -> bytes:
    """A PReLU after a 3x3 conv: nncase emits a k210 function with two outputs."""
    import keras

    inp = keras.Input((8, 8, 3))
    out = keras.layers.PReLU()(keras.layers.Conv2D(4, 3, padding="same")(inp))
    return _compile_keras(keras.Model(inp, out), "uint8")


def test_v5_with_multi_output_kpu_function(prelu_conv_kmodel):
    info = parse_kmodel(prelu_conv_kmodel)
    assert info.version == 5
    assert [m.type for m in info.modules] == ["stackvm", "k210"]
    assert info.inputs[0].dtype == "uint8" and info.inputs[0].shape == [1, 8, 8, 3] and info.inputs[0].size == 192
    assert info.outputs[0].dtype == "float32" and info.outputs[0].shape == [1, 8, 8, 4]
    assert info.mempools["kpu"] == 2 * 1024 * 1024
    assert info.loaders == ["canmv", "sdk"]


def test_every_truncation_is_a_clear_error(prelu_conv_kmodel):
    for cut in range(0, 400, 7):
        with pytest.raises(BadInputError):
            parse_kmodel(prelu_conv_kmodel[:cut])


def test_random_bytes_never_crash():
    rng = np.random.default_rng(1)
    for _ in range(200):
        data = b"LDMK\x05\x00\x00\x00" + rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        try:
            parse_kmodel(data)
        except BadInputError:
            pass
    with pytest.raises(BadInputError, match="not a kmodel"):
        parse_kmodel(os.urandom(64).replace(b"LDMK", b"XXXX")[:3])


def test_v4_header():
    # nncase 0.2: header, input ranges, input shapes, output ranges (no output shapes).
    header = struct.pack("<4s9I", b"LDMK", 4, 0, 0, 0, 4096, 3, 1, 1, 0)
    inputs = struct.pack("<4I", 1, 1, 0, 784) + struct.pack("<4i", 1, 1, 28, 28)
    data = header + inputs + struct.pack("<4I", 1, 0, 0, 40)
    info = parse_kmodel(data + b"\0" * 64)
    assert info.version == 4 and info.main_memory == 4096
    assert info.inputs[0].dtype == "uint8" and info.inputs[0].shape == [1, 1, 28, 28]
    assert info.outputs[0].dtype == "float32" and info.outputs[0].shape is None and info.outputs[0].size == 40
    assert info.loaders == ["maixpy", "canmv", "sdk"]


def test_v3_header():
    data = struct.pack("<7I", 3, 0, 0, 2, 0, 8192, 1) + struct.pack("<2I", 0, 40) + struct.pack("<4I", 1, 16, 2, 16)
    info = parse_kmodel(data)
    assert info.version == 3 and info.outputs[0].size == 40 and info.main_memory == 8192
    assert info.loaders == ["maixpy", "canmv", "sdk"]
