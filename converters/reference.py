"""Run the original model in TensorFlow: the reference a kmodel is compared against."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from k210.host.errors import BadInputError
from k210.host.quiet import captured_output

from .sources import ModelFormat, ModelSource

Predict = Callable[[np.ndarray], np.ndarray]


def load_reference(
    source: ModelSource, *, input_node: str | None = None, output_node: str | None = None, batch: int = 256
) -> Predict:
    """A function from a float32 NHWC batch to the model's (first) output, computed by TF."""
    if source.format is ModelFormat.KERAS:
        return _keras(source, batch)
    if source.format is ModelFormat.FROZEN_PB:
        return _frozen(source, input_node, output_node, batch)
    if source.format is ModelFormat.SAVED_MODEL:
        return _saved_model(source, batch)
    if source.format is ModelFormat.TFLITE:
        return _tflite(source)
    raise BadInputError(f"a {source.format.value} file cannot be a TensorFlow reference")


def _batched(fn: Predict, batch: int) -> Predict:
    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)]) if len(x) else x
    return run


def _keras(source: ModelSource, batch: int) -> Predict:
    from .to_tflite import load_keras

    model = load_keras(source.path)
    return _batched(lambda x: np.asarray(model(x, training=False)), batch)


def _frozen(source: ModelSource, input_node: str | None, output_node: str | None, batch: int) -> Predict:
    import tensorflow as tf

    from .to_tflite import find_io_nodes, read_graph_def

    graph_def = read_graph_def(source.path)
    input_node, output_node = find_io_nodes(graph_def, input_node, output_node)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    x_t = graph.get_tensor_by_name(f"{input_node}:0")
    y_t = graph.get_tensor_by_name(f"{output_node}:0")
    return _batched(lambda x: session.run(y_t, {x_t: x}), batch)


def _saved_model(source: ModelSource, batch: int) -> Predict:
    import tensorflow as tf

    with captured_output():
        loaded = tf.saved_model.load(str(source.path))
    signature = loaded.signatures["serving_default"]
    (name,) = signature.structured_input_signature[1].keys()
    (out,) = signature.structured_outputs.keys()
    return _batched(lambda x: signature(**{name: tf.constant(x)})[out].numpy(), batch)


def _tflite(source: ModelSource) -> Predict:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(source.path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        results = []
        for item in x:  # the converted model has batch 1
            interpreter.set_tensor(inp["index"], item[None].astype(inp["dtype"]))
            interpreter.invoke()
            results.append(interpreter.get_tensor(out["index"])[0].copy())
        return np.stack(results)

    return run
