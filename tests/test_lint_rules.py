"""Lint's placement rules and whole-model checks on tiny TFLite models (TF builds them; no nncase)."""

from __future__ import annotations

import pytest
from test_lint_models import convert, keras_layers, one_op_tflite, weights

from k210.converters.kpu_rules import NEEDS_PTQ, Placement, kpu_feature_map_bytes
from k210.converters.optables import (
    COMPILERS,
    NNCASE02_ONNX_OPS,
    NNCASE02_TFLITE_OPS,
    NNCASE19_ONNX_OPS,
    NNCASE19_TFLITE_OPS,
)
from k210.core.errors import BadInputError
from k210.host.lint import lint_tflite


@pytest.fixture(scope="module")
def tf():
    from k210.core.quiet import preload_tensorflow

    preload_tensorflow()
    import tensorflow

    return tensorflow


def conv_model(tf, kernel: int, shape: list[int], *, stride: int = 1, depthwise: bool = False) -> bytes:
    c = shape[-1]
    if depthwise:
        return convert(lambda x: tf.nn.depthwise_conv2d(x, weights(kernel, kernel, c, 1), [1, stride, stride, 1],
                                                        "SAME"), shape)
    return convert(lambda x: tf.nn.conv2d(x, weights(kernel, kernel, c, 8), stride, "SAME"), shape)


def placement(report, op: str) -> tuple[str, str, str | None]:
    found = [o for o in report.ops if o.op == op]
    assert found, [o.op for o in report.ops]
    return found[0].placement.value, found[0].reason, found[0].fix


def test_op_tables_match_the_nncase_sources():
    assert len(NNCASE19_TFLITE_OPS) == 78
    assert len(NNCASE02_TFLITE_OPS) == 40
    assert NNCASE02_TFLITE_OPS < NNCASE19_TFLITE_OPS
    assert len(NNCASE19_ONNX_OPS) == 117
    assert len(NNCASE02_ONNX_OPS) == 37
    assert {"TANH", "SHAPE", "PACK", "QUANTIZE", "SQUEEZE", "SPLIT", "PRELU"}.isdisjoint(NNCASE02_TFLITE_OPS)
    assert COMPILERS["nncase1.9"].kmodel_version == 5 and COMPILERS["nncase0.2"].kmodel_version == 4


def test_kpu_feature_map_bytes_follow_the_kpu_row_layout():
    assert kpu_feature_map_bytes(4, 4, 784) == 784 // 4 * 4 * 64  # 4 channels share a 64-byte row
    assert kpu_feature_map_bytes(28, 28, 32) == 16 * 28 * 64  # 2 channels per row up to width 32
    assert kpu_feature_map_bytes(320, 240, 3) == 3 * 240 * 5 * 64  # 5 rows of 64 bytes per line


@pytest.mark.parametrize("kernel,fix", [(5, "two 3x3 convs"), (7, "three 3x3 convs")])
def test_big_kernels_fall_back_to_the_cpu_with_the_fix(tf, kernel, fix):
    report = lint_tflite(conv_model(tf, kernel, [1, 16, 16, 4]))
    where, reason, hint = placement(report, "CONV_2D")
    assert where == "cpu" and reason.startswith(f"{kernel}x{kernel} kernel: the KPU does only 1x1 and 3x3")
    assert fix in hint and report.ok and report.fallbacks
    assert report.exit_code(strict=False) == 0 and report.exit_code(strict=True) == 1


@pytest.mark.parametrize("shape,limit", [([1, 8, 640, 1], "width 640 > 512"), ([1, 300, 8, 1], "height 300 > 256"),
                                         ([1, 4, 4, 1100], "1100 input channels > 1024")])
def test_kpu_shape_limits(tf, shape, limit):
    where, reason, _ = placement(lint_tflite(conv_model(tf, 3, shape)), "CONV_2D")
    assert where == "cpu" and limit in reason


def test_small_maps_are_padded_to_4x4(tf):
    where, reason, _ = placement(lint_tflite(conv_model(tf, 3, [1, 2, 2, 4])), "CONV_2D")
    assert where == "kpu-partial" and "pads it to 4x4" in reason


def test_stride_2_as_nncase_1_9_compiles_it(tf):
    """Measured with nncase 1.9 (runtime ops of the compiled kmodel): a 3x3 stride-2 conv gets CPU Pad ops
    around its KPU conv; a 1x1 stride-2 conv stays inside the KPU call; a stride-2 depthwise is computed at
    full resolution and subsampled on the CPU."""
    where, reason, _ = placement(lint_tflite(conv_model(tf, 3, [1, 8, 8, 4], stride=2)), "CONV_2D")
    assert where == "kpu-partial" and "stride 2" in reason and "pads the map and crops" in reason
    where, reason, _ = placement(lint_tflite(conv_model(tf, 1, [1, 8, 8, 4], stride=2)), "CONV_2D")
    assert where == "kpu" and "pool unit" in reason
    where, reason, _ = placement(lint_tflite(conv_model(tf, 3, [1, 8, 8, 4], stride=2, depthwise=True)),
                                 "DEPTHWISE_CONV_2D")
    assert where == "kpu-partial" and "full resolution" in reason and "subsamples it on the CPU" in reason


def test_activation_and_pool_fuse_after_a_kpu_conv_only(tf):
    fused = convert(lambda x: tf.nn.max_pool2d(tf.tanh(tf.nn.conv2d(x, weights(3, 3, 4, 8), 1, "SAME")), 2, 2,
                                                "VALID"), [1, 8, 8, 4])
    report = lint_tflite(fused)
    assert [o.placement.value for o in report.ops] == ["kpu", "kpu", "kpu"]
    assert "fused into the KPU conv" in report.ops[2].reason
    alone = lint_tflite(convert(lambda x: tf.tanh(tf.nn.max_pool2d(x, 3, 2, "VALID")), [1, 9, 9, 4]))
    assert [o.placement.value for o in alone.ops] == ["cpu", "cpu"]


def test_dense_is_a_padded_1x1_kpu_conv_up_to_1024_features(tf):
    where, reason, _ = placement(lint_tflite(convert(lambda x: tf.matmul(x, weights(784, 128)), [1, 784])),
                                 "FULLY_CONNECTED")
    assert where == "kpu-partial" and "1x1 KPU conv" in reason and "pad" in reason and "crop" in reason
    where, reason, fix = placement(lint_tflite(convert(lambda x: tf.matmul(x, weights(3136, 16)), [1, 3136])),
                                   "FULLY_CONNECTED")
    assert where == "cpu" and "3136 input features > 1024" in reason and fix


def test_without_ptq_everything_is_on_the_cpu(tf):
    report = lint_tflite(conv_model(tf, 3, [1, 8, 8, 4]), quant="float")
    assert [(o.placement.value, o.reason) for o in report.ops] == [("cpu", NEEDS_PTQ)]
    assert any("--quant uint8" in note for note in report.notes)


def test_prelu_does_not_fuse(tf):
    import keras

    report = lint_tflite(keras_layers(lambda: [keras.layers.PReLU()], [1, 8, 8, 4]))
    where, reason, fix = placement(report, "PRELU")
    assert where == "kpu-partial" and "PReLU does not fuse" in reason and "ReLU" in fix


@pytest.mark.parametrize("builtin,message", [
    (111, "'Unsupported tflite opcode: ELU'"),
    (150, "'Unsupported tflite opcode: ' (blank name: GELU is newer than nncase's TFLite schema)"),
])
def test_unsupported_ops_quote_nncase(builtin, message):
    report = lint_tflite(one_op_tflite(builtin))
    assert report.ops[0].placement is Placement.UNSUPPORTED and message in report.ops[0].reason
    assert not report.ok and report.exit_code() == 1 and report.ops[0].fix


def test_flex_ops_are_unsupported():
    report = lint_tflite(one_op_tflite(32, "FlexTensorListReserve"))
    assert "needs TF Flex ops" in report.ops[0].reason
    assert "Unsupported tflite CUSTOM code: FlexTensorListReserve" in report.ops[0].reason
    assert lint_tflite(one_op_tflite(32, "FlexRandomUniform")).ok


def test_standalone_relu6_is_refused_but_folds_after_a_conv(tf):
    report = lint_tflite(convert(lambda x: tf.nn.relu6(tf.reduce_mean(x, axis=[1, 2])), [1, 8, 8, 4]))
    assert placement(report, "RELU6")[0] == "unsupported" and "Clamp" in placement(report, "RELU6")[1]
    report = lint_tflite(convert(lambda x: tf.nn.relu6(tf.maximum(x, 0.5)), [1, 16]))
    assert report.ok


def test_nncase_0_2_has_the_shorter_list_and_makes_kmodel_v4():
    report = lint_tflite(one_op_tflite(28), compiler="nncase0.2")  # TANH
    assert "'Not supported tflite opcode: TANH'" in report.ops[0].reason
    maixpy = next(fw for fw in report.firmware if fw["key"] == "maixpy")
    assert maixpy["loads"]
    v5 = lint_tflite(one_op_tflite(28))
    assert not next(fw for fw in v5.firmware if fw["key"] == "maixpy")["loads"]


def test_dynamic_batch_is_a_note_other_dynamic_dims_a_problem(tf):
    batch = lint_tflite(convert(lambda x: x * 2.0 + tf.cast(tf.shape(x)[0], tf.float32), [None, 16]))
    assert batch.ok and any("dynamic batch" in n for n in batch.notes)
    other = lint_tflite(convert(lambda x: tf.squeeze(x, [1]), [1, 1, None]))
    assert not other.ok and any("dynamic dimensions" in p for p in other.problems)


def test_dynamic_flatten_in_a_tflite_file_is_refused_with_the_fix(tf):
    report = lint_tflite(convert(lambda x: tf.reshape(x, tf.stack([tf.shape(x)[0], -1])), [None, 4, 4]))
    where, reason, fix = placement(report, "RESHAPE")
    assert where == "unsupported" and "Invalid slice begin 0, while dim is 0" in reason and "batch fixed to 1" in fix


def test_tflite_quantised_models_are_a_problem(tf):
    from test_lint_models import _int8

    report = lint_tflite(convert(lambda x: tf.matmul(x, weights(16, 8)), [1, 16], setup=_int8([1, 16])))
    assert not report.ok and any("TFLite-quantised" in p and "Optimize.DEFAULT" in p for p in report.problems)


def test_a_layer_too_big_for_kpu_ram_does_not_fit(tf):
    report = lint_tflite(conv_model(tf, 3, [1, 256, 512, 64]))
    assert not report.ok and any("KPU RAM" in p and "KPU allocator" in p for p in report.problems)
    assert report.memory["kpu_peak_bytes"] > report.memory["kpu_ram_bytes"]


def test_bad_options_are_bad_input():
    with pytest.raises(BadInputError, match="unknown compiler"):
        lint_tflite(one_op_tflite(101), compiler="nncase2")
    with pytest.raises(BadInputError, match="unknown quantisation"):
        lint_tflite(one_op_tflite(101), quant="int4")


def test_lint_tflite_takes_parsed_info_too():
    from k210.converters.tflite_reader import read_tflite

    info = read_tflite(one_op_tflite(101))
    assert lint_tflite(info).to_dict() == lint_tflite(one_op_tflite(101)).to_dict()
