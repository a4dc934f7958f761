"""Third-party noise stays off stderr unless --verbose: TFLite's interpreter (its deprecation notice for
tf.lite.Interpreter and the XNNPACK INFO line) as verify and hil run a .tflite reference."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import numpy as np
from k210.core.quiet import captured_output, preload_tensorflow
preload_tensorflow()  # as the CLI does before any command that uses TF
import keras
import tensorflow as tf
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
with captured_output():
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
from k210.converters.tflite_interpreter import tflite_interpreter
it = tflite_interpreter(model_content=tflite)
it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 4), np.float32))
it.invoke()
print(it.get_tensor(it.get_output_details()[0]["index"]).shape)
"""


def _run(verbose: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("K210_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    if verbose:
        env["K210_VERBOSE"] = "1"
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=240)


def test_tflite_notices_are_kept_off_stderr_unless_verbose():
    quiet, loud = _run(False), _run(True)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert quiet.stdout.strip() == loud.stdout.strip() == "(1, 2)"
    assert quiet.stderr == "", quiet.stderr
    assert "tf.lite.Interpreter is deprecated" in loud.stderr  # the same run says it when asked
