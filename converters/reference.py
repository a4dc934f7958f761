"""Run the original model in TensorFlow: the reference a kmodel is compared against.

A reference maps a float32 batch (the model's input shape per item) to the list of ALL the model's
outputs, in the order the converted TFLite model (and so the kmodel) has them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from k210.core.errors import BadInputError, ToolFailure
from k210.core.quiet import captured_output

from .sources import ModelFormat, ModelSource

Predict = Callable[[np.ndarray], list[np.ndarray]]


def load_reference(
    source: ModelSource, *, input_node: str | None = None, output_node: str | None = None, batch: int = 256
) -> Predict:
    """A function from a float32 batch to the model's outputs (a list, one [N, ...] array each), by TF."""
    if source.format is ModelFormat.KERAS:
        predict = _keras(source, batch)
    elif source.format is ModelFormat.FROZEN_PB:
        predict = _frozen(source, input_node, output_node, batch)
    elif source.format is ModelFormat.SAVED_MODEL:
        predict = _saved_model(source, batch)
    elif source.format is ModelFormat.TFLITE:
        predict = _tflite(source)
    else:
        raise BadInputError(f"a {source.format.value} file cannot be a TensorFlow reference")
    return _guarded(predict, source)


def _guarded(fn: Predict, source: ModelSource) -> Predict:
    """TF's own errors (a wrong input shape, a broken graph) as one line, not a traceback."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        try:
            return fn(x)
        except (BadInputError, ToolFailure):
            raise
        except Exception as exc:  # TF raises many types: InvalidArgumentError, ValueError, ...
            text = str(exc).strip().splitlines()
            raise BadInputError(f"the reference {source.path} cannot run on these inputs "
                                f"{list(x.shape[1:])}: {text[0][:240] if text else type(exc).__name__}") from None

    return run


def _as_list(result) -> list[np.ndarray]:
    if isinstance(result, dict):
        return [np.asarray(result[k]) for k in sorted(result)]
    if isinstance(result, (list, tuple)):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


def _batched(fn: Callable[[np.ndarray], list[np.ndarray]], batch: int) -> Predict:
    def run(x: np.ndarray) -> list[np.ndarray]:
        pieces = [fn(x[i : i + batch]) for i in range(0, len(x), batch)]
        if not pieces:
            return []
        return [np.concatenate([p[k] for p in pieces]) for k in range(len(pieces[0]))]

    return run


def _keras(source: ModelSource, batch: int) -> Predict:
    from .to_tflite import load_keras

    model = load_keras(source.path)
    return _batched(lambda x: _as_list(model(x, training=False)), batch)


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
    return _batched(lambda x: [session.run(y_t, {x_t: x})], batch)


def _saved_model(source: ModelSource, batch: int) -> Predict:
    import tensorflow as tf

    with captured_output():
        loaded = tf.saved_model.load(str(source.path))
    signature = loaded.signatures["serving_default"]
    (name,) = signature.structured_input_signature[1].keys()
    outputs = sorted(signature.structured_outputs.keys())  # the order the TFLite converter gives them
    return _batched(lambda x: [signature(**{name: tf.constant(x)})[k].numpy() for k in outputs], batch)


def _tflite(source: ModelSource) -> Predict:
    from .tflite_interpreter import tflite_interpreter

    interpreter = tflite_interpreter(model_path=str(source.path))
    inp = interpreter.get_input_details()[0]
    outs = interpreter.get_output_details()

    def run(x: np.ndarray) -> list[np.ndarray]:
        results: list[list[np.ndarray]] = [[] for _ in outs]
        for item in x:  # the converted model has batch 1
            interpreter.set_tensor(inp["index"], item[None].astype(inp["dtype"]))
            interpreter.invoke()
            for k, out in enumerate(outs):
                results[k].append(interpreter.get_tensor(out["index"])[0].copy())
        return [np.stack(r) if r else np.zeros((0,)) for r in results]

    return run
