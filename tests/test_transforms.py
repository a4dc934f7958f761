"""Graph transforms before nncase (converters/transforms): the float model must not change.

Each model has layers whose channels differ by orders of magnitude, so equalisation really rescales;
the transformed TFLite model is run in the interpreter beside the original on inputs the calibration
never saw (equalisation is exact for any input; absorption past a ReLU only on the data measured, so
that one is checked on the calibration inputs).
"""

from __future__ import annotations

import numpy as np
import pytest

from k210.converters.transforms import TransformOptions, apply, graph
from k210.converters.transforms.bias import per_tensor_uint8
from k210.converters.transforms.measure import channel_ranges, outputs, relative_difference


def _tflite(model, tmp_path) -> bytes:
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite

    path = tmp_path / "m.keras"
    model.save(path)
    return convert_to_tflite(detect(path)).data


def _spread_weights(model, rng):
    """Random weights, with every conv's output channels scaled over 1e-2..1e2."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        w = rng.normal(0, 0.5, weights[0].shape).astype("float32")
        factor = np.exp(rng.uniform(np.log(0.01), np.log(100), w.shape[-1])).astype("float32")
        w = w * factor  # last axis: output channels (Keras HWIO, depthwise HWC1 is per input channel alike)
        bias = (rng.normal(0, 1, weights[1].shape) * factor[: weights[1].shape[0]]).astype("float32") \
            if len(weights) > 1 else None
        layer.set_weights([w] + ([bias] if bias is not None else []))


def mixed_model():
    import keras

    inp = keras.Input((12, 12, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)  # no activation: relu as its own op
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)  # linear depthwise -> pointwise
    x = keras.layers.Conv2D(6, 1, name="pw")(x)
    x = keras.layers.Conv2D(6, 1, activation="relu6", name="c6")(x)  # relu6 after: the next pair is skipped
    x = keras.layers.Conv2D(4, 1, name="after6")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="d1")(x)
    return keras.Model(inp, keras.layers.Dense(5, name="d2")(x))


def _keras_name(tensor: str) -> str:
    """`functional_1/dw_1/BiasAdd;...` -> `dw` (the last layer of a fused name is the one that wrote it)."""
    import re

    scopes = re.findall(r"functional(?:_\d+)*/(\w+?)(?:_\d+)?/", tensor)  # Keras numbers scopes per process
    return scopes[-1] if scopes else tensor


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    model = mixed_model()
    _spread_weights(model, np.random.default_rng(0))
    return _tflite(model, tmp_path_factory.mktemp("transforms"))


def test_pairs_found_and_relu6_reported(mixed):
    pairs, skipped = graph.find_pairs(graph.Model(mixed))
    names = " ".join(f"{_keras_name(p.first.name)}->{_keras_name(p.second.name)}" for p in pairs)
    for want in ("c1->c2", "c2->dw", "dw->pw", "pw->c6", "d1->Identity"):
        assert want in names, (want, names)
    assert "c6->after6" not in names
    assert any("relu6" in s for s in skipped)


@pytest.mark.parametrize("options", [
    TransformOptions(equalize=True),
    TransformOptions(equalize=True, absorb_bias=True),
])
def test_equalised_model_matches_the_original(mixed, options):
    rng = np.random.default_rng(1)
    calibration = rng.random((16, 12, 12, 3), dtype=np.float32)
    unseen = rng.random((8, 12, 12, 3), dtype=np.float32)
    done = apply(mixed, options, calibration)
    assert done.tflite != mixed
    # ~1e-5: float32 rounding over weights spread across 1e-2..1e2 per layer (absorption adds b - c + W.c,
    # a cancellation: measured 1.2e-5 there, 4e-6 without it)
    tolerance = 3e-5 if options.absorb_bias else 1e-5
    assert done.report["float_difference"] <= tolerance
    probe = unseen if not options.absorb_bias else calibration  # absorption past a ReLU holds on data seen
    assert relative_difference(outputs(mixed, probe), outputs(done.tflite, probe)) <= tolerance
    if not options.absorb_bias:  # linear absorption (dw->pw centring) holds everywhere; checked above
        return
    assert any(p["absorbed_max"] > 0 for p in done.report["pairs"])


def test_equalisation_narrows_the_channel_spread(mixed):
    """The tensor between dw and pw: its channels' peaks come closer together (the per-tensor step shrinks)."""
    calibration = np.random.default_rng(2).random((16, 12, 12, 3), dtype=np.float32)
    model = graph.Model(mixed)
    dw = next(op for op in model.weighted.values() if op.is_depthwise)
    before = channel_ranges(mixed, calibration, [dw.out])[dw.out]
    after = channel_ranges(apply(mixed, TransformOptions(equalize=True), calibration).tflite, calibration,
                           [dw.out])[dw.out]
    peak = lambda r: np.maximum(np.abs(r.low), np.abs(r.high))  # noqa: E731
    assert peak(after).max() / np.median(peak(after)) < 0.2 * peak(before).max() / np.median(peak(before))


def test_bias_correction_cancels_the_weight_error_mean(mixed):
    """After correction, the model with K210-quantised weights has (nearly) the float model's channel means."""
    calibration = np.random.default_rng(3).random((16, 12, 12, 3), dtype=np.float32)
    done = apply(mixed, TransformOptions(bias_correct=True), calibration)
    assert done.report["bias_corrected"] and done.report["bias_correction_float_change"] > 0

    def quantised(tflite: bytes) -> bytes:
        model = graph.Model(tflite)
        for op in model.weighted.values():
            if op.opcode != "FULLY_CONNECTED":
                model.set_constant(op.weights, per_tensor_uint8(model.constant(op.weights)).astype(np.float32))
        return model.to_bytes()

    model = graph.Model(mixed)
    tensor = next(op for op in model.weighted.values() if op.is_depthwise).out
    from k210.converters.transforms.measure import mean_values

    float_mean = mean_values(mixed, calibration, [tensor])[tensor].mean(axis=(0, 1))
    plain = mean_values(quantised(mixed), calibration, [tensor])[tensor].mean(axis=(0, 1))
    corrected = mean_values(quantised(done.tflite), calibration, [tensor])[tensor].mean(axis=(0, 1))
    assert np.abs(corrected - float_mean).max() < 0.5 * np.abs(plain - float_mean).max()


def test_per_tensor_uint8_keeps_zero_and_255_steps():
    w = np.array([-1.0, 0.0, 0.5, 2.0])
    q = per_tensor_uint8(w)
    assert q[1] == 0.0 and np.abs(q - w).max() <= 3.0 / 255 / 2 + 1e-12
    assert len(np.unique(per_tensor_uint8(np.linspace(-1, 2, 1000)))) == 256


def test_absorb_without_data_is_refused(mixed):
    from k210.core.errors import BadInputError

    with pytest.raises(BadInputError, match="calibration data"):
        apply(mixed, TransformOptions(absorb_bias=True), None)


def relu6_model(scale: float):
    """conv (ReLU6) -> conv; `scale` sets how far the first conv's channels reach (1: < 6, 100: clipped)."""
    import keras

    inp = keras.Input((6, 6, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 1, activation="relu6", name="first")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(3, 1, name="second")(x))
    w = np.zeros((1, 1, 3, 8), "float32")
    w[0, 0, 0, :] = np.geomspace(0.01, 1.0, 8) * scale  # channel ranges 0.01..1 (x scale) of a [0, 1] input
    model.get_layer("first").set_weights([w, np.zeros(8, "float32")])
    model.get_layer("second").set_weights([np.random.default_rng(0).normal(0, 1, (1, 1, 8, 3)).astype("float32"),
                                           np.zeros(3, "float32")])
    return model


@pytest.mark.parametrize("scale, replaced", [(1.0, True), (100.0, False)])
def test_relu6_becomes_relu_only_where_the_data_never_clip(tmp_path, scale, replaced):
    tflite = _tflite(relu6_model(scale), tmp_path)
    calibration = np.random.default_rng(4).random((16, 6, 6, 3), dtype=np.float32)
    done = apply(tflite, TransformOptions(equalize=True, relu6_as_relu=True), calibration)
    assert bool(done.report["relu6_as_relu"]) is replaced
    assert bool(done.report["pairs"]) is replaced and bool(done.report["skipped"]) is not replaced
    assert relative_difference(outputs(tflite, calibration), outputs(done.tflite, calibration)) <= 1e-5
    if replaced:
        first = next(op for op in graph.Model(done.tflite).weighted.values() if "first" in op.name)
        assert first.activation == "relu"
        assert done.report["pairs"][0]["scale_max"] / done.report["pairs"][0]["scale_min"] > 5


def test_a_tensor_read_by_two_layers_scales_both(tmp_path):
    """BlazeFace's last ReLU feeds its classificator and its regressor: both consumers scale alike."""
    import keras

    inp = keras.Input((6, 6, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", name="shared")(inp)
    x = keras.layers.ReLU(name="act")(x)
    model = keras.Model(inp, [keras.layers.Conv2D(2, 1, name="left")(x), keras.layers.Conv2D(4, 1, name="right")(x)])
    _spread_weights(model, np.random.default_rng(5))
    tflite = _tflite(model, tmp_path)
    pairs, _ = graph.find_pairs(graph.Model(tflite))
    assert len(pairs) == 1 and len(pairs[0].consumers) == 2
    rng = np.random.default_rng(6)
    calibration, unseen = rng.random((16, 6, 6, 3), dtype=np.float32), rng.random((8, 6, 6, 3), dtype=np.float32)
    done = apply(tflite, TransformOptions(equalize=True, absorb_bias=True), calibration)
    assert done.report["pairs"][0]["scale_max"] / done.report["pairs"][0]["scale_min"] > 5
    assert relative_difference(outputs(tflite, calibration), outputs(done.tflite, calibration)) <= 1e-5
    equalised = apply(tflite, TransformOptions(equalize=True), calibration).tflite
    assert relative_difference(outputs(tflite, unseen), outputs(equalised, unseen)) <= 1e-5


def test_channel_spread_leaves_dead_channels_out():
    from k210.converters.transforms.measure import ChannelRanges

    assert ChannelRanges(np.zeros(4), np.array([0.0, 0.0, 1.0, 3.0])).spread() == pytest.approx(1.5)
    assert ChannelRanges(np.zeros(3), np.zeros(3)).spread() == 1.0
    assert ChannelRanges(np.array([0.0, -1.0]), np.array([3000.0, 4.0])).spread() == pytest.approx(3000 / 1502.5)
