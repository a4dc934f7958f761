"""TF-op-level check of a frozen GraphDef (the course's nn_xo.pb), before conversion: what each node
becomes in TFLite and whether the selected compiler imports that. Works on the GraphDef protobuf
only; the TFLite-level check after conversion stays the authority."""

from __future__ import annotations

from k210.converters.optables import CompilerTable

from .report import Finding

# TF op -> the TFLite builtin it becomes ("" = nothing: folded, removed or an input).
TF_TO_TFLITE = {
    "Conv2D": "CONV_2D", "DepthwiseConv2dNative": "DEPTHWISE_CONV_2D", "MatMul": "FULLY_CONNECTED",
    "Conv2DBackpropInput": "TRANSPOSE_CONV", "Conv3D": "CONV_3D", "BatchMatMulV2": "BATCH_MATMUL",
    "Relu": "RELU", "Relu6": "RELU6", "LeakyRelu": "LEAKY_RELU", "Elu": "ELU", "Selu": "SELECT", "Sigmoid": "LOGISTIC",
    "Tanh": "TANH", "Softmax": "SOFTMAX", "LogSoftmax": "LOG_SOFTMAX", "MaxPool": "MAX_POOL_2D",
    "AvgPool": "AVERAGE_POOL_2D", "Reshape": "RESHAPE", "Shape": "SHAPE", "StridedSlice": "STRIDED_SLICE",
    "Pack": "PACK", "Unpack": "UNPACK", "Mean": "MEAN", "Sum": "SUM", "Max": "REDUCE_MAX", "Min": "REDUCE_MIN",
    "Prod": "REDUCE_PROD", "ConcatV2": "CONCATENATION", "Add": "ADD", "AddV2": "ADD", "Sub": "SUB", "Mul": "MUL",
    "RealDiv": "DIV", "Maximum": "MAXIMUM", "Minimum": "MINIMUM", "Pad": "PAD", "PadV2": "PADV2",
    "MirrorPad": "MIRROR_PAD", "Squeeze": "SQUEEZE", "ExpandDims": "EXPAND_DIMS", "Transpose": "TRANSPOSE",
    "Exp": "EXP", "Log": "LOG", "Sqrt": "SQRT", "Rsqrt": "RSQRT", "Square": "SQUARE", "Abs": "ABS", "Neg": "NEG",
    "Floor": "FLOOR", "Ceil": "CEIL", "ResizeBilinear": "RESIZE_BILINEAR",
    "ResizeNearestNeighbor": "RESIZE_NEAREST_NEIGHBOR", "Tile": "TILE", "GatherV2": "GATHER", "Cast": "CAST",
    "ArgMax": "ARG_MAX", "ArgMin": "ARG_MIN", "Slice": "SLICE", "Split": "SPLIT", "SplitV": "SPLIT_V",
    "Select": "SELECT", "SelectV2": "SELECT_V2", "Where": "WHERE", "RandomUniform": "RANDOM_UNIFORM",
    "While": "WHILE", "StatelessWhile": "WHILE",
}
PASSTHROUGH = {
    "Const": "constant", "Identity": "removed by the converter", "NoOp": "removed by the converter",
    "BiasAdd": "folded into the conv/MatMul before it", "FusedBatchNorm": "folded into the conv before it",
    "FusedBatchNormV3": "folded into the conv before it", "Placeholder": "the model input",
    "PlaceholderWithDefault": "folded (its default is used)", "StopGradient": "removed by the converter",
}
NOT_FROZEN = {"VariableV2", "VarHandleOp", "ReadVariableOp", "Variable", "Assign", "AssignVariableOp"}
TF1_CONTROL_FLOW = {"Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond"}
DYNAMIC_FLATTEN = ("Shape", "StridedSlice", "Pack", "Reshape")


def check_graph_def(graph_def, table: CompilerTable, input_node: str | None = None) -> tuple[
        list[Finding], list[str], list[str]]:
    """(findings per node except constants, problems, notes)."""
    nodes = {node.name: node for node in graph_def.node}
    flatten_nodes = _dynamic_flatten_nodes(nodes)
    findings: list[Finding] = []
    problems: list[str] = []
    notes: list[str] = []
    for node in graph_def.node:
        if node.op == "Const":
            continue
        finding = _check_node(node, table, flatten_nodes)
        findings.append(finding)
        if node.op in NOT_FROZEN:
            problems.append(f"{node.name} ({node.op}): the graph is not frozen; freeze it (variables to constants) "
                            "before linting or converting")
    for node in graph_def.node:
        if node.op == "Placeholder" and (input_node is None or node.name == input_node):
            shape = _placeholder_shape(node)
            if shape and shape[0] is None:
                notes.append(f"input {node.name} {_show(shape)} has a dynamic batch: the converter fixes it to 1")
            if shape and any(d is None for d in shape[1:]):
                problems.append(f"input {node.name} {_show(shape)} has dynamic dimensions besides the batch: the "
                                "K210 needs fixed shapes")
    if flatten_nodes:
        notes.append(
            "dynamic-batch flatten (Shape -> StridedSlice -> Pack -> Reshape): with the batch fixed to 1 the converter "
            "folds it into a constant RESHAPE; unfixed, nncase 1.9 fails with 'Invalid slice begin 0, while dim is 0'"
        )
    return findings, problems, notes


def _check_node(node, table: CompilerTable, flatten_nodes: set[str]) -> Finding:
    def finding(verdict: str, reason: str, fix: str | None = None) -> Finding:
        return Finding(node.name, node.op, verdict, reason, fix)

    if node.name in flatten_nodes:
        return finding("folded", "part of the dynamic-batch flatten; folds away with batch 1")
    if node.op in PASSTHROUGH:
        return finding("ok", PASSTHROUGH[node.op])
    if node.op in NOT_FROZEN:
        return finding("unsupported", "a variable: the graph is not frozen")
    if node.op in TF1_CONTROL_FLOW:
        return finding("unsupported", "TF1 control flow (a loop or cond): becomes WHILE, which nncase cannot import",
                       "remove tf.cond/tf.while_loop (and RNNs) from the inference graph")
    if node.op == "RandomUniform":
        return finding("unsupported", "random op in the inference graph (dropout left in?): becomes RANDOM_UNIFORM, "
                                      "which nncase cannot import", "export the graph with dropout disabled")
    tflite_op = TF_TO_TFLITE.get(node.op)
    if tflite_op is None:
        return finding("unchecked", "no TF-level rule: see the TFLite ops after conversion")
    if tflite_op in table.tflite_ops:
        return finding("ok", f"becomes {tflite_op}")
    return finding("unsupported", f"becomes {tflite_op}, which {table.title} cannot import")


def _dynamic_flatten_nodes(nodes: dict) -> set[str]:
    """Reshape <- Pack <- StridedSlice <- Shape: the flatten that tf.layers.flatten emits."""
    found: set[str] = set()
    for node in nodes.values():
        if node.op != "Reshape" or len(node.input) < 2:
            continue
        pack = nodes.get(_source(node.input[1]))
        if pack is None or pack.op != "Pack":
            continue
        for item in pack.input:
            sliced = nodes.get(_source(item))
            if sliced is not None and sliced.op == "StridedSlice" and sliced.input:
                shape = nodes.get(_source(sliced.input[0]))
                if shape is not None and shape.op == "Shape":
                    found |= {node.name, pack.name, sliced.name, shape.name}
    return found


def _source(input_name: str) -> str:
    return input_name.lstrip("^").split(":")[0]


def _placeholder_shape(node) -> list[int | None] | None:
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        return None
    return [None if d.size < 0 else int(d.size) for d in node.attr["shape"].shape.dim]


def _show(shape: list[int | None]) -> str:
    return "[" + ",".join("None" if d is None else str(d) for d in shape) + "]"
