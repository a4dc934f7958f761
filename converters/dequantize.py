"""Float16-weight TFLite -> the equivalent float32 TFLite that nncase 1.9 can import.

TFLite's float16 post-training quantisation stores each weight as a float16 constant and puts a
DEQUANTIZE op in front of every consumer (MediaPipe's face detectors ship that way). nncase 1.9
refuses or crashes on those graphs. The DEQUANTIZE of a constant is itself a constant: folding it
(float16 -> float32 is exact) gives a plain float32 model that computes the same thing, which
nncase then quantises itself.

The flatbuffer is edited with TFLite's own generated object API (schema_py_generated). That module
needs only `flatbuffers`, so it is loaded from TensorFlow's folder without importing TensorFlow
(seconds), which keeps `k210 lint` on a .tflite fast.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from k210.core.errors import BadInputError, ToolFailure

_TFLITE_IDENTIFIER = b"TFL3"
_FLOAT32, _FLOAT16 = 0, 1  # schema TensorType values
_DEQUANTIZE = 6  # schema BuiltinOperator value


@dataclass(frozen=True)
class Dequantized:
    data: bytes  # the float32 TFLite flatbuffer
    folded: int  # DEQUANTIZE ops of float16 constants replaced by float32 constants
    bytes_before: int
    bytes_after: int


@lru_cache(maxsize=1)
def _schema() -> ModuleType:
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise ToolFailure("TensorFlow is not installed: its TFLite schema is needed to rewrite .tflite files")
    path = Path(spec.submodule_search_locations[0]) / "lite" / "python" / "schema_py_generated.py"
    module_spec = importlib.util.spec_from_file_location("k210_tflite_schema", path)
    if module_spec is None or module_spec.loader is None or not path.is_file():
        raise ToolFailure(f"TFLite schema module not found at {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _ints(values) -> list[int]:
    """The object API gives int vectors as numpy arrays or None: plain lists are easier to remap."""
    return [] if values is None else [int(v) for v in values]


def _opcode(code) -> int:
    # Builtin codes above 127 live only in builtinCode; older files only fill deprecatedBuiltinCode.
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _load(data: bytes):
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        raise BadInputError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    except Exception as exc:  # a truncated flatbuffer raises struct/index errors from deep inside
        raise BadInputError(f"unreadable TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    if not model.subgraphs or not model.buffers or not model.operatorCodes:
        raise BadInputError("TFLite flatbuffer without a graph (no subgraphs, buffers or operator codes)")
    return model


def _is_const_float16(model, tensor) -> bool:
    if tensor.type != _FLOAT16 or not tensor.buffer:
        return False
    buffer = model.buffers[tensor.buffer]
    return buffer.data is not None and len(buffer.data) > 0


def count_float16_weights(data: bytes) -> int:
    """How many DEQUANTIZE ops turn a float16 constant into float32 (0: nothing to fold)."""
    model = _load(data)
    return sum(len(_foldable(model, graph)) for graph in model.subgraphs or [])


def _foldable(model, graph) -> list[int]:
    """Indices of the graph's DEQUANTIZE ops whose input is a float16 constant."""
    found = []
    for index, op in enumerate(graph.operators or []):
        inputs, outputs = _ints(op.inputs), _ints(op.outputs)
        if _opcode(model.operatorCodes[op.opcodeIndex]) != _DEQUANTIZE or len(inputs) != 1 or len(outputs) != 1:
            continue
        source, target = graph.tensors[inputs[0]], graph.tensors[outputs[0]]
        if _is_const_float16(model, source) and target.type == _FLOAT32:
            found.append(index)
    return found


def fold_constant_ops(data: bytes, foldable: Callable[[Any, Any], list[int]],
                      values_of: Callable[[Any, Any, Any], bytes], growth: int = 2) -> tuple[bytes, int]:
    """Replace each op `foldable(model, graph)` names (one constant input, one output) by a constant whose
    bytes `values_of(model, source, target)` gives; drop what is left unused. Returns (model, ops folded)."""
    model = _load(data)
    schema = _schema()
    folded = 0
    for graph_index, graph in enumerate(model.subgraphs or []):
        fold = set(foldable(model, graph))
        for index in sorted(fold):
            op = graph.operators[index]
            source, target = graph.tensors[int(op.inputs[0])], graph.tensors[int(op.outputs[0])]
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(values_of(model, source, target), dtype=np.uint8)
            model.buffers.append(buffer)
            target.buffer = len(model.buffers) - 1
        graph.operators = [op for i, op in enumerate(graph.operators or []) if i not in fold]
        folded += len(fold)
        _drop_unused_tensors(graph, model.signatureDefs or [], graph_index)
    _drop_unused_opcodes(model)
    _drop_unused_buffers(model)
    builder = __import__("flatbuffers").Builder(max(1024, len(data) * growth))
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    return bytes(builder.Output()), folded


def dequantize_float16_bytes(data: bytes) -> Dequantized:
    """Fold every float16-constant DEQUANTIZE into a float32 constant; drop what is left unused."""

    def as_float32(model, source, target) -> bytes:
        values = np.frombuffer(bytes(bytearray(model.buffers[source.buffer].data)), dtype="<f2")
        return values.astype("<f4").tobytes()

    out, folded = fold_constant_ops(data, _foldable, as_float32)
    return Dequantized(out, folded, len(data), len(out))


def dequantize_float16_weights(src: Path, dst: Path) -> Path:
    """Write ``src`` with its float16 weights as float32 to ``dst`` (atomically); returns ``dst``."""
    from k210.core.fsutil import write_bytes_atomic

    try:
        data = Path(src).read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {src}: {exc.strerror}") from None
    result = dequantize_float16_bytes(data)
    write_bytes_atomic(Path(dst), result.data)
    return Path(dst)


def _drop_unused_tensors(graph, signatures, graph_index: int) -> None:
    used: set[int] = set(_ints(graph.inputs)) | set(_ints(graph.outputs))
    for op in graph.operators or []:
        used.update(i for i in _ints(op.inputs) if i >= 0)  # -1 marks an omitted optional input
        used.update(_ints(op.outputs))
        used.update(_ints(getattr(op, "intermediates", None)))
    for signature in signatures:
        if signature.subgraphIndex == graph_index:
            used.update(m.tensorIndex for m in (signature.inputs or []) + (signature.outputs or []))
    keep = sorted(used)
    new_index = {old: new for new, old in enumerate(keep)}
    graph.tensors = [graph.tensors[i] for i in keep]
    graph.inputs = [new_index[i] for i in _ints(graph.inputs)]
    graph.outputs = [new_index[i] for i in _ints(graph.outputs)]
    for op in graph.operators or []:
        op.inputs = [new_index[i] if i >= 0 else i for i in _ints(op.inputs)]
        op.outputs = [new_index[i] for i in _ints(op.outputs)]
        if getattr(op, "intermediates", None) is not None:
            op.intermediates = [new_index[i] for i in _ints(op.intermediates)]
    for signature in signatures:
        if signature.subgraphIndex == graph_index:
            for tensor_map in (signature.inputs or []) + (signature.outputs or []):
                tensor_map.tensorIndex = new_index[tensor_map.tensorIndex]


def _drop_unused_opcodes(model) -> None:
    used = sorted({op.opcodeIndex for graph in model.subgraphs or [] for op in graph.operators or []})
    new_index = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            op.opcodeIndex = new_index[op.opcodeIndex]


def _drop_unused_buffers(model) -> None:
    # Buffer 0 stays: by convention the empty buffer that non-constant tensors point at.
    used = {0} | {t.buffer for graph in model.subgraphs or [] for t in graph.tensors or []}
    used |= {m.buffer for m in model.metadata or []}
    used |= set(_ints(model.metadataBuffer))  # indices into buffers too (offline memory plans)
    keep = sorted(used)
    new_index = {old: new for new, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            tensor.buffer = new_index[tensor.buffer]
    for metadata in model.metadata or []:
        metadata.buffer = new_index[metadata.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new_index[i] for i in _ints(model.metadataBuffer)]
