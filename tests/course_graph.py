"""Build the course's own frozen graph (seed 000, `nn_xo.pb`) with tf.compat.v1 ops.

`tf.layers.flatten` on a [None, 28, 28, 1] placeholder emitted Shape -> StridedSlice -> Pack ->
Reshape; Keras 3 has no tf.layers, so the same ops are spelt out here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_course_pb(path: Path, seed: int = 0, weights: list[np.ndarray] | None = None) -> Path:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    if weights is None:
        weights = [
            rng.normal(0, 0.05, (784, 128)).astype(np.float32), np.zeros(128, np.float32),
            rng.normal(0, 0.05, (128, 128)).astype(np.float32), np.zeros(128, np.float32),
            rng.normal(0, 0.05, (128, 2)).astype(np.float32), np.zeros(2, np.float32),
        ]
    w1, b1, w2, b2, w3, b3 = weights
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        x = v1.placeholder(tf.float32, shape=[None, 28, 28, 1], name="input_node")
        batch = tf.shape(x)[0]  # Shape -> StridedSlice
        flat = tf.reshape(x, tf.stack([batch, 784]))  # Pack -> Reshape
        h1 = tf.nn.relu(tf.matmul(flat, tf.constant(w1, name="WFC1")) + tf.constant(b1, name="BFC1"))
        h2 = tf.nn.relu(tf.matmul(h1, tf.constant(w2, name="WFC2")) + tf.constant(b2, name="BFC2"))
        tf.nn.softmax(tf.matmul(h2, tf.constant(w3, name="WFC3")) + tf.constant(b3, name="BFC3"), name="output_node")
    ops = {node.op for node in graph.as_graph_def().node}
    assert {"Shape", "StridedSlice", "Pack", "Reshape"} <= ops, ops
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def keras_weights(model) -> list[np.ndarray]:
    """The Dense kernels and biases of the X/O MLP, in the course graph's order."""
    return [np.asarray(w) for w in model.get_weights()]
