"""Tiny TFLite models for the lint tests, one per op (no tests in this module).

test_lint_tables.py runs this file as a child process: `build OUT` makes every model with
TensorFlow (one process), `compile JOBS RESULTS` compiles a batch with nncase 1.9 using the
project's own nncase options (k210.converters.nncase_worker). Keeping TF and nncase out of the
pytest process means a nncase crash (it can SIGSEGV) costs one model, not the test run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Ops of nncase 1.9's list that no tiny model here produces, and why. CUSTOM itself is covered
# by FlexRandomUniform; only the second custom code it lowers is left out.
EXCLUDED = {
    "CUSTOM:TFLite_Detection_PostProcess": "needs an SSD box decoder with anchors and a flexbuffer options map; "
    "no K210 classifier produces it",
}


@dataclass(frozen=True)
class Case:
    name: str
    op: str  # the op the model exists to produce (must appear in it)
    build: Callable[[], bytes]
    kind: str = "op"  # op: an importable op; refused: an op or pattern nncase must refuse; quantised


# --- builders -----------------------------------------------------------------------------------


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def convert(fn, *shapes, setup=None) -> bytes:
    """tf.function over float32 inputs -> frozen concrete function -> TFLite (batch as given)."""
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec(shape, tf.float32) for shape in shapes]
    concrete = tf.function(fn, autograph=False).get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(concrete)])
    if setup is not None:
        setup(converter)
    return bytes(converter.convert())


def keras_layers(make_layers, shape, setup=None) -> bytes:
    import keras

    model = keras.Sequential([keras.Input(shape[1:], batch_size=shape[0]), *make_layers()])
    return convert(lambda x: model(x, training=False), shape, setup=setup)


def weights(*shape):
    import numpy as np

    tf = _tf()
    rng = np.random.default_rng(abs(hash(shape)) % 2**32)
    return tf.constant(rng.normal(0, 0.3, size=shape).astype("float32"))


def one_op_tflite(builtin: int, custom_code: str | None = None, shape=(1, 16)) -> bytes:
    """A TFLite model with one float input, one op and one float output, built with the flatbuffer
    builder (no TensorFlow): for ops the converter never emits (FAKE_QUANT, CUSTOM codes)."""
    import flatbuffers
    import tflite

    b = flatbuffers.Builder(1024)

    def int_vector(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def table_vector(start, offsets):
        start(b, len(offsets))
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    tensors = []
    for name in (b.CreateString("input"), b.CreateString("output")):
        dims = int_vector(tflite.TensorStartShapeVector, list(shape))
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, dims)
        tflite.TensorAddType(b, tflite.TensorType.FLOAT32)
        tflite.TensorAddBuffer(b, 0)
        tflite.TensorAddName(b, name)
        tensors.append(tflite.TensorEnd(b))
    op_inputs = int_vector(tflite.OperatorStartInputsVector, [0])
    op_outputs = int_vector(tflite.OperatorStartOutputsVector, [1])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, op_inputs)
    tflite.OperatorAddOutputs(b, op_outputs)
    operator = tflite.OperatorEnd(b)
    tensor_vector = table_vector(tflite.SubGraphStartTensorsVector, tensors)
    graph_inputs = int_vector(tflite.SubGraphStartInputsVector, [0])
    graph_outputs = int_vector(tflite.SubGraphStartOutputsVector, [1])
    operators = table_vector(tflite.SubGraphStartOperatorsVector, [operator])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vector)
    tflite.SubGraphAddInputs(b, graph_inputs)
    tflite.SubGraphAddOutputs(b, graph_outputs)
    tflite.SubGraphAddOperators(b, operators)
    graph = tflite.SubGraphEnd(b)
    custom = b.CreateString(custom_code) if custom_code else None
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
    tflite.OperatorCodeAddBuiltinCode(b, builtin)
    tflite.OperatorCodeAddVersion(b, 1)
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(b, custom)
    code = tflite.OperatorCodeEnd(b)
    tflite.BufferStart(b)
    empty_buffer = tflite.BufferEnd(b)
    codes = table_vector(tflite.ModelStartOperatorCodesVector, [code])
    buffers = table_vector(tflite.ModelStartBuffersVector, [empty_buffer])
    graphs = table_vector(tflite.ModelStartSubgraphsVector, [graph])
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes)
    tflite.ModelAddSubgraphs(b, graphs)
    tflite.ModelAddBuffers(b, buffers)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _int8(shape: list[int]):
    """Converter setup for full-integer quantisation (float I/O) calibrated on random inputs."""

    def setup(converter) -> None:
        import numpy as np

        tf = _tf()

        def samples():
            for seed in range(4):
                yield [np.random.default_rng(seed).random(shape, dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples

    return setup


def _float16(converter) -> None:
    tf = _tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


# --- the catalogue --------------------------------------------------------------------------------

V = [1, 16]  # a vector
M = [1, 8, 8, 4]  # a small NHWC feature map


def _tf_ops() -> dict[str, Callable[[], bytes]]:
    tf = _tf()
    sin = tf.sin
    conv3 = lambda x: tf.nn.conv2d(x, weights(3, 3, 4, 8), 1, "SAME")  # noqa: E731
    return {
        "ABS": lambda: convert(lambda x: tf.abs(x), V),
        "ADD": lambda: convert(lambda x: x + sin(x), M),
        "ARG_MAX": lambda: convert(lambda x: tf.cast(tf.argmax(x, -1, output_type=tf.int32), tf.float32), V),
        "ARG_MIN": lambda: convert(lambda x: tf.cast(tf.argmin(x, -1, output_type=tf.int32), tf.float32), V),
        "AVERAGE_POOL_2D": lambda: convert(lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"), M),
        "BATCH_MATMUL": lambda: convert(lambda x: tf.matmul(x, tf.transpose(sin(x), [0, 2, 1])), [1, 4, 8]),
        "CAST": lambda: convert(lambda x: tf.cast(tf.cast(x, tf.int32), tf.float32), V),
        "CEIL": lambda: convert(lambda x: tf.math.ceil(x), V),
        "CONCATENATION": lambda: convert(lambda x: tf.concat([x, sin(x)], -1), M),
        "CONV_2D": lambda: convert(conv3, M),
        "COS": lambda: convert(lambda x: tf.cos(x), V),
        "DEPTHWISE_CONV_2D": lambda: convert(
            lambda x: tf.nn.depthwise_conv2d(x, weights(3, 3, 4, 1), [1, 1, 1, 1], "SAME"), M),
        "DIV": lambda: convert(lambda x: x / (tf.abs(x) + 1.0), V),
        "EQUAL": lambda: convert(lambda x: tf.cast(tf.equal(tf.round(x), 0.0), tf.float32), V),
        "EXP": lambda: convert(lambda x: tf.exp(x), V),
        "EXPAND_DIMS": lambda: convert(lambda x: tf.expand_dims(x, 1), [None, 16]),  # fixed batch folds it
        "FLOOR": lambda: convert(lambda x: tf.floor(x), V),
        "FLOOR_DIV": lambda: convert(lambda x: tf.math.floordiv(x, tf.abs(x) + 1.0), V),
        "FLOOR_MOD": lambda: convert(lambda x: tf.math.floormod(x, tf.abs(x) + 1.0), V),
        "FULLY_CONNECTED": lambda: convert(lambda x: tf.matmul(x, weights(16, 8)), V),
        "GREATER": lambda: convert(lambda x: tf.cast(x > sin(x), tf.float32), V),
        "GREATER_EQUAL": lambda: convert(lambda x: tf.cast(x >= sin(x), tf.float32), V),
        "L2_NORMALIZATION": lambda: convert(lambda x: tf.math.l2_normalize(x, -1), V),
        "LEAKY_RELU": lambda: convert(lambda x: tf.nn.leaky_relu(x, 0.1), V),
        "LESS": lambda: convert(lambda x: tf.cast(x < sin(x), tf.float32), V),
        "LESS_EQUAL": lambda: convert(lambda x: tf.cast(x <= sin(x), tf.float32), V),
        "LOG": lambda: convert(lambda x: tf.math.log(tf.abs(x) + 1.0), V),
        "LOGISTIC": lambda: convert(lambda x: tf.sigmoid(x), V),
        "MAX_POOL_2D": lambda: convert(lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), M),
        "MAXIMUM": lambda: convert(lambda x: tf.maximum(x, sin(x)), V),
        "MEAN": lambda: convert(lambda x: tf.reduce_mean(x, axis=[1, 2]), M),
        "MINIMUM": lambda: convert(lambda x: tf.minimum(x, sin(x)), V),
        "MUL": lambda: convert(lambda x: x * sin(x), V),
        "NEG": lambda: convert(lambda x: -x, V),
        "NOT_EQUAL": lambda: convert(lambda x: tf.cast(tf.not_equal(tf.round(x), 0.0), tf.float32), V),
        "PAD": lambda: convert(lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), M),
        "PADV2": lambda: convert(lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0), M),
        "MIRROR_PAD": lambda: convert(lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"), M),
        "PACK": lambda: convert(lambda x: tf.stack([x, sin(x)], 1), V),
        "POW": lambda: convert(lambda x: tf.pow(tf.abs(x) + 1.0, sin(x)), V),
        "REDUCE_MAX": lambda: convert(lambda x: tf.reduce_max(x, axis=-1), V),
        "REDUCE_MIN": lambda: convert(lambda x: tf.reduce_min(x, axis=-1), V),
        "REDUCE_PROD": lambda: convert(lambda x: tf.reduce_prod(x, axis=-1), V),
        "RELU": lambda: convert(lambda x: tf.nn.relu(x), V),
        "PRELU": lambda: _keras_prelu(),
        # A ReLU6 the converter cannot fuse (MAXIMUM takes no fused activation); nncase folds it.
        "RELU6": lambda: convert(lambda x: tf.nn.relu6(tf.maximum(x, sin(x))), V),
        "RESHAPE": lambda: convert(lambda x: tf.reshape(x, [1, 4, 4]), V),
        "RESIZE_BILINEAR": lambda: convert(lambda x: tf.image.resize(x, [16, 16], "bilinear"), M),
        "RESIZE_NEAREST_NEIGHBOR": lambda: convert(lambda x: tf.image.resize(x, [16, 16], "nearest"), M),
        "ROUND": lambda: convert(lambda x: tf.round(x), V),
        "RSQRT": lambda: convert(lambda x: tf.math.rsqrt(tf.abs(x) + 1.0), V),
        "SHAPE": lambda: convert(lambda x: x * tf.cast(tf.shape(x)[0], tf.float32), [None, 16]),
        "SIN": lambda: convert(lambda x: tf.sin(x), V),
        "SLICE": lambda: convert(lambda x: tf.slice(x, [0, 2], [1, 8]), V),
        "SOFTMAX": lambda: convert(lambda x: tf.nn.softmax(x), V),
        "SPACE_TO_BATCH_ND": lambda: convert(lambda x: tf.space_to_batch_nd(x, [2, 2], [[0, 0], [0, 0]]), M),
        "SQUEEZE": lambda: convert(lambda x: tf.squeeze(x, [1]), [None, 1, None]),  # static shapes fold it
        "BATCH_TO_SPACE_ND": lambda: convert(lambda x: tf.batch_to_space(x, [2, 2], [[0, 0], [0, 0]]), [4, 4, 4, 2]),
        "STRIDED_SLICE": lambda: convert(lambda x: x[:, ::2], V),
        "SQRT": lambda: convert(lambda x: tf.sqrt(tf.abs(x) + 1.0), V),
        "SQUARE": lambda: convert(lambda x: tf.square(x), V),
        "SUB": lambda: convert(lambda x: x - sin(x), V),
        "SUM": lambda: convert(lambda x: tf.reduce_sum(x, axis=-1), V),
        "TANH": lambda: convert(lambda x: tf.tanh(x), V),
        "TILE": lambda: convert(lambda x: tf.tile(x, [1, 2]), V),
        "TRANSPOSE": lambda: convert(lambda x: tf.transpose(x, [0, 3, 1, 2]), M),
        "TRANSPOSE_CONV": lambda: convert(
            lambda x: tf.nn.conv2d_transpose(x, weights(3, 3, 4, 4), [1, 8, 8, 4], 1, "SAME"), M),
        # An int8-quantised Dense with float I/O: QUANTIZE in front, DEQUANTIZE behind.
        "QUANTIZE": lambda: convert(lambda x: tf.matmul(x, weights(16, 8)), V, setup=_int8(V)),
        "DEQUANTIZE": lambda: convert(lambda x: tf.matmul(x, weights(16, 8)), V, setup=_int8(V)),
        "FAKE_QUANT": lambda: one_op_tflite(80),  # the converter rewrites FakeQuant into QUANTIZE/DEQUANTIZE
        "GATHER": lambda: convert(lambda x: tf.gather(x, [3, 1, 2], axis=1), V),
        "GATHER_ND": lambda: convert(lambda x: tf.gather_nd(x, [[0, 3], [0, 1]]), V),
        "ONE_HOT": lambda: convert(lambda x: tf.one_hot(tf.argmax(x, -1, output_type=tf.int32), 16), V),
        "SQUARED_DIFFERENCE": lambda: convert(lambda x: tf.math.squared_difference(x, sin(x)), V),
        "LOG_SOFTMAX": lambda: convert(lambda x: tf.nn.log_softmax(x), V),
        "SPLIT": lambda: convert(lambda x: tf.split(x, 2, axis=-1)[0] * tf.split(x, 2, axis=-1)[1], V),
        "HARD_SWISH": lambda: convert(lambda x: x * tf.nn.relu6(x + 3.0) / 6.0, V),
        "CUSTOM": lambda: one_op_tflite(32, "FlexRandomUniform"),
    }


def _keras_prelu() -> bytes:
    import keras

    return keras_layers(lambda: [keras.layers.PReLU(alpha_initializer="random_uniform")], M)


def _refused() -> dict[str, tuple[str, Callable[[], bytes]]]:
    """name -> (the op lint blames, builder) for models nncase 1.9 must refuse."""
    import keras

    tf = _tf()
    layers = keras.layers

    def unfrozen_dense() -> bytes:  # resource variables: a conversion without freezing
        model = keras.Sequential([keras.Input((16,), batch_size=1), layers.Dense(4)])
        concrete = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec([1, 16], tf.float32))
        return bytes(tf.lite.TFLiteConverter.from_concrete_functions([concrete], model).convert())

    return {
        "ELU": ("ELU", lambda: convert(lambda x: tf.nn.elu(x), V)),
        "GELU": ("GELU", lambda: keras_layers(lambda: [layers.Activation("gelu")], V)),
        "LSTM": ("WHILE", lambda: keras_layers(lambda: [layers.LSTM(4)], [1, 3, 4])),
        "LSTM_unrolled": ("UNPACK", lambda: keras_layers(lambda: [layers.LSTM(4, unroll=True)], [1, 3, 4])),
        "CONV_3D": ("CONV_3D", lambda: keras_layers(lambda: [layers.Conv3D(2, 3)], [1, 4, 4, 4, 1])),
        "SELU": ("SELECT", lambda: keras_layers(lambda: [layers.Activation("selu")], V)),
        "RELU_N1_TO_1": ("RELU_N1_TO_1", lambda: convert(lambda x: tf.clip_by_value(x, -1.0, 1.0), V)),
        "RANDOM_UNIFORM": ("RANDOM_UNIFORM", lambda: convert(lambda x: x + tf.random.uniform([1, 16]), V)),
        "FLEX_TENSOR_LIST": ("CUSTOM:FlexTensorListReserve", lambda: one_op_tflite(32, "FlexTensorListReserve")),
        "VAR_HANDLE": ("VAR_HANDLE", unfrozen_dense),
        "DEPTHWISE_MULTIPLIER_2": ("DEPTHWISE_CONV_2D", lambda: keras_layers(
            lambda: [layers.DepthwiseConv2D(3, depth_multiplier=2)], M)),
        "TRANSPOSE_CONV_STRIDE_2": ("TRANSPOSE_CONV", lambda: keras_layers(
            lambda: [layers.Conv2DTranspose(4, 3, strides=2, padding="same")], M)),
        "RELU6_AFTER_MEAN": ("RELU6", lambda: convert(lambda x: tf.nn.relu6(tf.reduce_mean(x, axis=[1, 2])), M)),
        "RELU6_AFTER_PAD": ("RELU6", lambda: convert(
            lambda x: tf.nn.relu6(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])), M)),
        "DYNAMIC_FLATTEN": ("RESHAPE", lambda: convert(
            lambda x: tf.matmul(tf.reshape(x, tf.stack([tf.shape(x)[0], -1])), weights(16, 4)), [None, 4, 4])),
    }


def _quantised() -> dict[str, Callable[[], bytes]]:
    """TFLite-quantised models: lint calls them a problem; nncase crashes or refuses these two."""
    tf = _tf()
    return {
        "INT8_CONV": lambda: convert(lambda x: tf.nn.conv2d(x, weights(3, 3, 4, 8), 1, "SAME"), M, setup=_int8(M)),
        "FLOAT16_CONV": lambda: convert(lambda x: tf.nn.conv2d(x, weights(3, 3, 4, 8), 1, "SAME"), M,
                                        setup=_float16),
    }


def _placement() -> dict[str, Callable[[], bytes]]:
    """Models whose KPU use is checked against the compiled kmodel's modules."""
    import keras

    tf = _tf()
    layers = keras.layers
    return {
        "conv3x3_relu_maxpool": lambda: keras_layers(
            lambda: [layers.Conv2D(8, 3, padding="same", activation="relu"), layers.MaxPooling2D(2)], [1, 28, 28, 1]),
        "conv5x5": lambda: keras_layers(lambda: [layers.Conv2D(8, 5, padding="same")], [1, 28, 28, 1]),
        "xo_mlp": lambda: keras_layers(lambda: [
            layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.3),
            layers.Dense(128, activation="relu"), layers.Dropout(0.3), layers.Dense(2, activation="softmax")],
            [1, 28, 28, 1]),
        "conv3x3_width_640": lambda: convert(lambda x: tf.nn.conv2d(x, weights(3, 3, 1, 2), 1, "SAME"), [1, 8, 640, 1]),
        "conv3x3_height_300": lambda: convert(lambda x: tf.nn.conv2d(x, weights(3, 3, 1, 2), 1, "SAME"),
                                              [1, 300, 8, 1]),
        "conv3x3_2x2_map": lambda: convert(lambda x: tf.nn.conv2d(x, weights(3, 3, 4, 8), 1, "SAME"), [1, 2, 2, 4]),
        "conv3x3_stride_2": lambda: convert(lambda x: tf.nn.conv2d(x, weights(3, 3, 4, 8), 2, "SAME"), M),
        "conv3x3_dilated": lambda: keras_layers(lambda: [layers.Conv2D(4, 3, dilation_rate=2)], [1, 16, 16, 4]),
        "conv1x1_1100_channels": lambda: convert(lambda x: tf.nn.conv2d(x, weights(1, 1, 1100, 8), 1, "SAME"),
                                                 [1, 4, 4, 1100]),
        "dense_2048_in": lambda: convert(lambda x: tf.matmul(x, weights(2048, 8)), [1, 2048]),
        "dense_1100_out": lambda: convert(lambda x: tf.matmul(x, weights(16, 1100)), V),
        "maxpool_alone": lambda: convert(lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), M),
        "add_map_and_pool": lambda: convert(lambda x: x + tf.nn.max_pool2d(x, 2, 1, "SAME"), M),
        "add_map_and_constant": lambda: convert(lambda x: x + weights(1, 8, 8, 4), M),
        "conv3x3_tanh": lambda: convert(lambda x: tf.tanh(tf.nn.conv2d(x, weights(3, 3, 4, 8), 1, "SAME")), M),
        "conv3x3_relu6_standalone_after_max": lambda: convert(
            lambda x: tf.nn.relu6(tf.maximum(tf.nn.conv2d(x, weights(3, 3, 4, 8), 1, "SAME"), 0.5)), M),
        "separable_conv": lambda: keras_layers(lambda: [layers.SeparableConv2D(8, 3)], M),
        "lenet_kpu_block": lambda: keras_layers(lambda: [
            layers.Conv2D(16, 3, padding="same", activation="relu6"), layers.Conv2D(32, 3, padding="same",
                                                                                    activation="relu6"),
            layers.MaxPooling2D(2)], [1, 28, 28, 1]),
    }


def catalogue() -> list[Case]:
    cases = [Case(f"op_{op}", op, build) for op, build in _tf_ops().items()]
    cases += [Case(f"refused_{name}", op, build, "refused") for name, (op, build) in _refused().items()]
    cases += [Case(f"quantised_{name}", "", build, "quantised") for name, build in _quantised().items()]
    cases += [Case(f"placement_{name}", "", build, "placement") for name, build in _placement().items()]
    return cases


# --- child-process entry points -------------------------------------------------------------------


def build_all(out: Path) -> None:
    """Write every model and manifest.json: [{name, op, kind, file, input_shape, ops}] (or an error)."""
    from k210.converters.tflite_reader import read_tflite

    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for case in catalogue():
        entry = {"name": case.name, "op": case.op, "kind": case.kind}
        try:
            data = case.build()
        except Exception as exc:  # report, do not stop: the test names the builder that broke
            entry["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}"
            manifest.append(entry)
            continue
        info = read_tflite(data)
        path = out / f"{case.name}.tflite"
        path.write_bytes(data)
        entry.update(file=str(path), input_shape=info.inputs[0].shape, ops=[op.opcode for op in info.ops])
        manifest.append(entry)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def compile_jobs(jobs_file: Path, results_file: Path) -> int:
    """Compile jobs in order, appending one JSON line per start and per result. Stops after the first
    nncase error: nncase 1.9 can be left in a bad state by an exception (a later, valid model then
    crashes), so the parent restarts a fresh process for the rest."""
    import numpy as np

    from k210.converters.nncase_worker import compile_request

    jobs = json.loads(jobs_file.read_text())
    done = {json.loads(line)["key"] for line in results_file.read_text().splitlines() if '"ok"' in line} \
        if results_file.exists() else set()
    with results_file.open("a") as log:
        for job in jobs:
            if job["key"] in done:
                continue
            log.write(json.dumps({"key": job["key"], "started": True}) + "\n")
            log.flush()
            request = {
                "tflite": job["file"], "kmodel": job["kmodel"], "quant": job["quant"], "input_type": "float32",
                "input_range": [0.0, 1.0], "input_shape": job["input_shape"], "calibrate_method": "no_clip",
                "calibration": None,
            }
            if job["quant"] == "uint8":
                calibration = Path(job["kmodel"] + ".calib.npy")
                shape = [2, *[max(int(d), 1) for d in job["input_shape"][1:]]]
                np.save(calibration, np.random.default_rng(0).random(shape, dtype=np.float32))
                request["calibration"] = str(calibration)
            try:
                Path(job["kmodel"]).write_bytes(compile_request(request))
            except Exception as exc:  # nncase raises RuntimeError/ValueError with its message
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.write(json.dumps({"key": job["key"], "ok": False, "error": message}) + "\n")
                return 1
            log.write(json.dumps({"key": job["key"], "ok": True}) + "\n")
            log.flush()
    return 0


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "build":
        build_all(Path(sys.argv[2]))
    elif command == "compile":
        sys.exit(compile_jobs(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(f"unknown command {command}")
