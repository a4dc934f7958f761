"""`k210 lint model.keras` from the archive's config and weights, without TensorFlow (issue 28): the same
verdict, placements, memory figures and layer findings as the TensorFlow converter's path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _with_biases(model, seed: int = 0):
    """Trained-looking weights: non-zero biases and batch-norm statistics, so no constant is all zeros."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.5, 0.2, w.shape).astype(np.float32) + (1.0 if w.ndim == 1 else 0.0)
                       for w in model.get_weights()])
    return model


def _models():
    import keras

    layers = keras.layers

    def mlp():
        return keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(64, activation="relu"),
                                 layers.Dropout(0.2), layers.Dense(10, activation="softmax")])

    def conv_bn():
        return keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(16, 3, padding="same", use_bias=False),
                                 layers.BatchNormalization(), layers.ReLU(6.0), layers.MaxPooling2D(),
                                 layers.Conv2D(8, 1), layers.Activation("relu"), layers.AveragePooling2D(16),
                                 layers.Flatten(), layers.Dense(4, activation="softmax")])

    def residual():
        x = keras.Input((16, 16, 8))
        y = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(x)))
        z = layers.ReLU()(layers.add([x, y]))
        z = layers.ZeroPadding2D(((0, 1), (0, 1)))(z)
        z = layers.DepthwiseConv2D(3, strides=2, padding="valid")(z)
        z = layers.GlobalAveragePooling2D()(z)
        return keras.Model(x, layers.Dense(3)(layers.BatchNormalization()(layers.Dense(16)(z))))

    def mobilenet():
        return keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None)

    return {"mlp": mlp, "mlp_trained": lambda: _with_biases(mlp()), "conv_bn": conv_bn,
            "conv_bn_trained": lambda: _with_biases(conv_bn(), 1), "residual": residual,
            "residual_trained": lambda: _with_biases(residual(), 2), "mobilenet_0.25_96": mobilenet}


def figures(report) -> dict:
    """What both paths must agree on (op names differ: TFLite's tensor names against Keras' layer names)."""
    return {
        "ok": report.ok,
        "ops": [(o.op, o.placement.value, o.lowered_convs, o.kpu_bytes) for o in report.ops],
        "memory": {k: v for k, v in report.memory.items() if isinstance(v, (int, float))},
        "findings": [(f.kind, f.verdict, f.reason) for f in report.findings],
        "problems": len(report.problems), "estimate_problems": len(report.estimate_problems),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from k210.core.quiet import preload_tensorflow

    preload_tensorflow()
    out = tmp_path_factory.mktemp("keras")
    paths = {}
    for name, make in _models().items():
        paths[name] = out / f"{name}.keras"
        make().save(paths[name])
    return paths


@pytest.mark.parametrize("name", list(_models()))
def test_config_path_matches_the_tensorflow_path(saved, name):
    from k210.converters.to_tflite import load_keras
    from k210.host.lint import lint_path
    from k210.host.lint.sources import lint_model

    path = saved[name]
    by_config = lint_path(path)
    assert any("without TensorFlow" in note for note in by_config.notes), by_config.notes
    by_tf = lint_model(load_keras(path), name=str(path), format="keras")
    assert figures(by_config) == figures(by_tf)
    assert by_config.ops and by_config.memory["total_bytes"] > 0


def test_a_layer_its_config_does_not_decide_takes_the_tensorflow_path_and_says_so(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.LeakyReLU(0.1),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    path = tmp_path / "leaky.keras"
    model.save(path)
    from k210.host.lint import lint_path

    report = lint_path(path)
    assert any("TensorFlow loaded" in note and "LeakyReLU" in note for note in report.notes), report.notes
    assert any(op.op == "LEAKY_RELU" for op in report.ops)


def test_a_fresh_lint_of_a_keras_file_does_not_import_tensorflow(saved):
    probe = ("import sys; from k210.host.cli import main; code = main(['lint', sys.argv[1]]);"
             "print('tensorflow' in sys.modules, 'keras' in sys.modules, code)")
    result = subprocess.run([sys.executable, "-c", probe, str(saved["residual_trained"])], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split()[-3:] == ["False", "False", "0"], result.stdout + result.stderr
