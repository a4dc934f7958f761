"""Keras model -> frozen GraphDef `.pb` with nodes `input_node` and `output_node`, as the course does:
variables folded into constants, Dropout gone (inference mode), batch dimension None."""

from __future__ import annotations

from k210.core.errors import BadInputError

INPUT_NODE = "input_node"
OUTPUT_NODE = "output_node"


def freeze_keras(model, *, input_node: str = INPUT_NODE, output_node: str = OUTPUT_NODE) -> bytes:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInputError("only single-input, single-output models can be frozen")
    shape = [None, *model.inputs[0].shape[1:]]
    spec = tf.TensorSpec(shape, model.inputs[0].dtype, name=input_node)

    @tf.function
    def forward(x):
        return tf.identity(model(x, training=False), name=output_node)

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function(spec))
    graph_def = frozen.graph.as_graph_def()
    # The concrete function appends its own `Identity` return node after ours; keep only what
    # `output_node` needs, so the graph ends where the course's does.
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [output_node])
    names = {node.name for node in graph_def.node}
    if input_node not in names:
        raise BadInputError(f"freezing lost the input node '{input_node}'")
    leftovers = [n.name for n in graph_def.node if "dropout" in n.name.lower()]
    if leftovers:
        raise BadInputError(f"Dropout survived freezing: {leftovers[:3]}")
    return graph_def.SerializeToString()
