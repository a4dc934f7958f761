"""Lint an ONNX file (when the onnx package is installed): the compiler's ONNX op table, the nodes
nncase 1.9 imports but fails on (onnx_rules, measured on onnx's single-op node tests), and the same
K210 placement rules as for TFLite, applied to ONNX's NCHW nodes. Advisory: `k210 compile` takes
the TensorFlow-side formats, and the KPU placements here were not checked by compiling ONNX."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from k210.converters.kpu_rules import (
    KPU_FILTERS,
    KPU_MAX_C,
    KPU_MIN_HW,
    KPU_POOLS,
    NEEDS_PTQ,
    OpPlacement,
    Placement,
    kernel_advice,
    kpu_feature_map_bytes,
    shape_limit,
)
from k210.core.errors import BadInputError

from .firmware import firmware_for
from .memory import memory_problems, memory_summary
from .onnx_rules import OnnxContext, refusal
from .report import LintReport
from .tflite_lint import check_quant, compiler_table

_SMALL_CONSTANT = 4096  # elements: axes, starts, scales; weights stay out of the rules' look-ups
_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSwish", "Clip"}
_KPU_CAPABLE = {"Conv", "Gemm", "MatMul", "ConvTranspose"}


@dataclass
class _Graph:
    shapes: dict[str, list[int | None]]
    initializers: dict[str, list[int]]
    consumers: dict[str, int]
    kpu_tails: dict[str, tuple[str, bool, bool]] = field(default_factory=dict)  # tensor -> (conv, depthwise, pool free)
    rules: OnnxContext | None = None  # what host/lint/onnx_rules looks up (nncase 1.9 only)


def lint_onnx(path: Path, *, compiler: str, quant: str) -> LintReport:
    table = compiler_table(compiler)
    check_quant(quant)
    onnx = _import_onnx()
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors of several kinds
        raise BadInputError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes are optional: rules that need them then stay conservative
        pass
    graph = _index(model.graph)
    graph.rules = _rule_context(model, graph) if table.key == "nncase1.9" else None
    rows = [_place(i, node, graph, table, quant) for i, node in enumerate(model.graph.node)]
    report = LintReport(source=str(path), format="onnx", compiler=table.key, quant=quant, ops=rows)
    report.problems += [f"{r.name} ({r.op}): {r.reason}" for r in rows if r.placement is Placement.UNSUPPORTED]
    report.fallbacks = [f"{r.name} ({r.op}: {r.reason.split(':')[0]})" for r in rows
                        if r.op in _KPU_CAPABLE and r.placement is Placement.CPU]
    _check_inputs(model.graph, report)
    report.memory = _memory(rows, graph, quant, model.graph)
    problems, notes = memory_problems(report.memory)
    report.problems += problems
    report.estimate_problems += problems
    report.notes += notes
    report.firmware = firmware_for(table.kmodel_version)
    report.notes.append("ONNX lint is advisory: k210 compile takes Keras/SavedModel/.pb/.tflite; the refusals here "
                        "were measured by compiling onnx's single-op node tests with nncase 1.9 "
                        "(benchmarks/onnx_single_ops), the KPU placements were not")
    return report


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise BadInputError("linting an ONNX file needs the onnx package: pip install onnx") from None
    return onnx


def _index(graph) -> _Graph:
    shapes: dict[str, list[int | None]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    initializers = {init.name: list(init.dims) for init in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    for out in graph.output:
        consumers[out.name] = consumers.get(out.name, 0) + 2  # a graph output never fuses away
    return _Graph(shapes, initializers, consumers)


def _rule_context(model, graph: _Graph) -> OnnxContext:
    """Small constants (axes, starts, scales: initializers and Constant nodes), graph inputs, types, producers."""
    from onnx import numpy_helper

    constants: dict[str, np.ndarray] = {}
    types: dict[str, int] = {}
    shapes = dict(graph.shapes)
    for init in model.graph.initializer:
        types[init.name] = init.data_type
        shapes[init.name] = list(init.dims)
        if int(np.prod(init.dims)) <= _SMALL_CONSTANT:
            constants[init.name] = numpy_helper.to_array(init)
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        types.setdefault(value.name, value.type.tensor_type.elem_type)
    producers = {}
    for node in model.graph.node:
        for out in node.output:
            producers[out] = node
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and int(np.prod(attribute.t.dims)) <= _SMALL_CONSTANT:
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
                    types[node.output[0]] = attribute.t.data_type
    initialized = {init.name for init in model.graph.initializer}
    graph_inputs = {value.name for value in model.graph.input if value.name not in initialized}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    return OnnxContext(constants, graph_inputs, shapes, producers, types, opset)


def _attr(node, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return list(attribute.ints) if attribute.ints else (attribute.i if attribute.type == 2 else default)
    return default


def _place(index: int, node, graph: _Graph, table, quant: str) -> OpPlacement:
    name = node.name or (node.output[0] if node.output else f"node{index}")

    def row(placement: Placement, reason: str, fix: str | None = None, kpu_bytes: int = 0) -> OpPlacement:
        return OpPlacement(index, name, node.op_type, placement, reason, fix, kpu_bytes)

    if node.op_type not in table.onnx_ops:
        return row(Placement.UNSUPPORTED, f"{table.title} cannot import it: "
                                          f"'{table.unsupported_onnx.format(op=node.op_type)}'")
    refused = refusal(node, graph.rules, quant) if graph.rules is not None else None
    if refused is not None:
        return row(Placement.UNSUPPORTED, f"{table.title} fails on it: {refused[0]}", refused[1])
    if quant != "uint8":
        capable = node.op_type in _KPU_CAPABLE | _ACTIVATIONS | {"MaxPool", "AveragePool"}
        return row(Placement.CPU, NEEDS_PTQ if capable else "runs on the RISC-V CPU")
    if node.op_type == "Conv":
        return _conv(node, graph, row)
    if node.op_type in ("Gemm", "MatMul"):
        return _matmul(node, graph, row)
    source = node.input[0] if node.input else ""
    tail = graph.kpu_tails.get(source)
    fusable = tail is not None and graph.consumers.get(source, 0) == 1
    if node.op_type in _ACTIVATIONS and fusable:
        graph.kpu_tails[node.output[0]] = tail
        return row(Placement.KPU, f"fused into the KPU conv {tail[0]}'s activation table")
    if node.op_type in ("MaxPool", "AveragePool") and fusable and not tail[1] and tail[2]:
        kernel, strides = _attr(node, "kernel_shape", [0, 0]), _attr(node, "strides", [1, 1])
        if len(set(kernel)) == 1 and len(set(strides)) == 1 and (kernel[0], strides[0]) in KPU_POOLS:
            graph.kpu_tails[node.output[0]] = (tail[0], False, False)
            return row(Placement.KPU, f"{KPU_POOLS[(kernel[0], strides[0])]} pool fused into the KPU conv {tail[0]}")
    if node.op_type == "PRelu":
        return row(Placement.CPU, "PReLU does not fuse into a KPU conv's activation table",
                   "use Relu or LeakyRelu to keep it fused")
    return row(Placement.CPU, "runs on the RISC-V CPU (the KPU does only conv, pool and activation)")


def _conv(node, graph: _Graph, row) -> OpPlacement:
    weights = graph.initializers.get(node.input[1]) if len(node.input) > 1 else None
    data = graph.shapes.get(node.input[0])
    if weights is None:
        return row(Placement.CPU, "weights computed at run time: only constant-weight convs go to the KPU")
    kernel = _attr(node, "kernel_shape", weights[2:])
    if len(kernel) != 2:
        return row(Placement.CPU, f"{len(kernel)}-D conv: the KPU does only 2-D convs")
    if kernel[0] != kernel[1] or kernel[0] not in KPU_FILTERS:
        return row(Placement.CPU, *kernel_advice(kernel[0], kernel[1]))
    if _attr(node, "dilations", [1, 1]) != [1, 1]:
        return row(Placement.KPU_PARTIAL, "dilated conv: lowered to space-to-batch + KPU conv + batch-to-space")
    group = _attr(node, "group", 1)
    c_out = weights[0]
    if not data or len(data) != 4 or None in data[1:]:
        return row(Placement.KPU, f"{kernel[0]}x{kernel[1]} conv on the KPU (input shape unknown: limits unchecked)")
    _, c_in, h, w = data
    if group not in (1, c_in):
        return row(Placement.CPU, f"grouped conv ({group} groups): the KPU does groups 1 or depthwise only")
    limit = shape_limit(h, w, c_in) or (f"{c_out} output channels > {KPU_MAX_C}" if c_out > KPU_MAX_C else None)
    if limit:
        return row(Placement.CPU, f"{limit} (KPU limit)")
    depthwise = group == c_in and c_in != 1
    strides = _attr(node, "strides", [1, 1])
    placement = Placement.KPU
    notes = []
    if h < KPU_MIN_HW or w < KPU_MIN_HW:
        placement = Placement.KPU_PARTIAL
        notes.append(f"{h}x{w} map padded to 4x4 and cropped")
    if strides != [1, 1]:
        if strides != [2, 2] or depthwise:
            placement = Placement.KPU_PARTIAL
        notes.append(f"stride {strides[0]}: a stride-1 KPU conv + subsampling")
    kpu_bytes = (kpu_feature_map_bytes(max(w, 4), max(h, 4), c_in)
                 + kpu_feature_map_bytes(max(w, 4), max(h, 4), c_out))
    graph.kpu_tails[node.output[0]] = (node.name or node.output[0], depthwise, strides == [1, 1])
    kind = "depthwise " if depthwise else ""
    return row(placement, f"{kind}{kernel[0]}x{kernel[1]} conv on the KPU" + ("; " + "; ".join(notes) if notes else ""),
               kpu_bytes=kpu_bytes)


def _matmul(node, graph: _Graph, row) -> OpPlacement:
    weights = graph.initializers.get(node.input[1]) if len(node.input) > 1 else None
    if weights is None or len(weights) != 2:
        return row(Placement.CPU, "MatMul with run-time or non-2-D weights: stays on the CPU")
    transposed = node.op_type == "Gemm" and _attr(node, "transB", 0) == 1
    out_features, in_features = (weights[0], weights[1]) if transposed else (weights[1], weights[0])
    if in_features > KPU_MAX_C or out_features > KPU_MAX_C:
        return row(Placement.CPU, f"{in_features}->{out_features} features: above {KPU_MAX_C} KPU channels, stays a "
                                  "CPU MatMul")
    kpu_bytes = kpu_feature_map_bytes(4, 4, in_features) + kpu_feature_map_bytes(4, 4, out_features)
    return row(Placement.KPU_PARTIAL, f"lowered to a 1x1 KPU conv ({in_features}->{out_features}) on a map padded to "
                                      "4x4: pad + conv + crop", kpu_bytes=kpu_bytes)


def _check_inputs(graph, report: LintReport) -> None:
    initializer_names = {init.name for init in graph.initializer}
    for value in graph.input:
        if value.name in initializer_names:
            continue
        dims = value.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value") or d.dim_value <= 0]
        if 0 in dynamic:
            report.notes.append(f"input '{value.name}' has a dynamic batch: export with batch 1")
        if any(i > 0 for i in dynamic):
            report.problems.append(f"input '{value.name}' has dynamic dimensions: the K210 needs fixed shapes")


def _memory(rows: list[OpPlacement], graph: _Graph, quant: str, onnx_graph) -> dict:
    on_kpu = {r.index for r in rows if r.placement in (Placement.KPU, Placement.KPU_PARTIAL)}
    kpu_weights = {node.input[1] for i, node in enumerate(onnx_graph.node)
                   if i in on_kpu and node.op_type in _KPU_CAPABLE and len(node.input) > 1}
    model = 0
    for name, dims in graph.initializers.items():
        count = 1
        for d in dims:
            count *= max(int(d), 1)
        model += count if name in kpu_weights else 4 * count
    peak = max((r for r in rows if r.kpu_bytes), key=lambda r: r.kpu_bytes, default=None)
    working = max((4 * _numel(graph.shapes.get(n)) for n in graph.shapes), default=0) * 2
    return memory_summary(peak, model, working, quant)


def _numel(shape: list[int | None] | None) -> int:
    n = 1
    for d in shape or []:
        n *= d or 1
    return n
