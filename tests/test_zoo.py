"""Every seed model builds, compiles for the K210 both ways, and lands where lint says it will."""

from __future__ import annotations

import numpy as np
import pytest

from k210.models.zoo import ZOO, get_model_def


def _compile(model, quant: str):
    from k210.converters.compile import CompileSpec, compile_tflite
    from k210.converters.kmodel import parse_kmodel
    from k210.converters.to_tflite import keras_to_tflite

    tfl = keras_to_tflite(model)
    spec = CompileSpec(quant=quant, input_type="uint8" if quant == "uint8" else "float32",
                       input_shape=tfl.input_shape)
    if quant == "uint8":
        spec.calibration = np.random.default_rng(0).integers(0, 256, (8, *tfl.input_shape[1:]), dtype=np.uint8)
    return parse_kmodel(compile_tflite(tfl.data, spec).kmodel)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_compiles_float_and_uint8(name):
    model_def = get_model_def(name)
    model = model_def.build({"xo": 2, "shapes": 5}.get(model_def.dataset, 10))
    assert model.inputs[0].shape[1:] == ((128, 128, 3) if model_def.dataset == "shapes" else (28, 28, 1))
    uint8 = _compile(model, "uint8")
    assert uint8.inputs[0].dtype == "uint8"
    assert "k210" in [m.type for m in uint8.modules]  # every seed model has something the KPU takes
    float_info = _compile(model, "float")
    assert [m.type for m in float_info.modules] == ["stackvm"]


@pytest.mark.slow
def test_lenet_kpu_keeps_its_weights_small_enough_for_sram():
    """The seed LeNet's 3136x512 Dense cannot lower onto the KPU; lenet_kpu's can."""
    lenet, lenet_kpu = (_compile(get_model_def(n).build(10), "uint8") for n in ("lenet5", "lenet_kpu"))
    assert lenet_kpu.size < 1_000_000
    assert lenet.size > 6 * 1024 * 1024  # more than the K210's whole SRAM


def test_aliases_and_unknown_names():
    from k210.core.errors import BadInputError

    assert get_model_def("xo").name == "xo_mlp"
    with pytest.raises(BadInputError, match="unknown model"):
        get_model_def("vgg16")


def test_mobilenet_kpu_stays_on_the_kpu():
    """Every conv of mobilenet_kpu lands on the KPU by lint's rules; only the pool and softmax stay on the CPU."""
    from k210.converters.to_tflite import keras_to_tflite
    from k210.host.lint import lint_tflite

    model = get_model_def("mobilenet_kpu").build(5)
    assert model.inputs[0].shape[1:] == (128, 128, 3)
    report = lint_tflite(keras_to_tflite(model).data, compiler="nncase1.9", quant="uint8", source="mobilenet_kpu")
    assert report.ok, report.problems
    convs = [op for op in report.ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(convs) == 1 + 2 * 13 + 1
    assert all(op.placement.value in ("kpu", "kpu-partial") for op in convs)
    assert sorted(op.op for op in report.ops if op.placement.value == "cpu") == ["MEAN", "SOFTMAX"]
