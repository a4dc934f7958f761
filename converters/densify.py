"""Sparse-weight TFLite -> the same model with dense constant weights, which nncase 1.9 can import.

TFLite's sparsity stores a weight in a compressed (CSR-like) layout and puts a DENSIFY op in front
of its consumer; MediaPipe's pose and full-range face detectors ship that way. nncase 1.9 has no
DENSIFY ('Unsupported tflite opcode: DENSIFY'). DENSIFY of a constant is a constant: writing the
dense values (exactly the stored ones, zeros elsewhere) into the op's output tensor and dropping the
op gives a model that computes the same thing. Float16 weights behind it are then folded by
converters.dequantize as usual.

The layout (schema.fbs SparsityParameters): the stored values are the leaves of a walk over
`dim_metadata` levels in order; a DENSE level of size n has children prev * n + i, a SPARSE_CSR
level has children array_segments[prev] .. array_segments[prev + 1] with coordinates from
array_indices; `traversal_order` names the dimension of each level and `block_map` the dimension
each block level (order >= rank) subdivides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from k210.core.errors import BadInputError

from .dequantize import (
    _TFLITE_IDENTIFIER,
    _ints,
    _load,
    _opcode,
    _schema,
    fold_constant_ops,
)

_DENSIFY = 124  # schema BuiltinOperator value
_DENSE = 0  # schema DimensionType
_DTYPES = {0: "<f4", 1: "<f2", 2: "<i4", 3: "u1", 4: "<i8", 7: "<i2", 9: "i1"}  # schema TensorType -> numpy


@dataclass(frozen=True)
class Densified:
    data: bytes
    folded: int  # DENSIFY ops of constant sparse tensors replaced by dense constants


def count_sparse_weights(data: bytes) -> int:
    """How many DENSIFY ops take a constant sparse tensor (0: nothing to fold)."""
    if not _has_densify(data):
        return 0  # the common case, without unpacking the whole model
    model = _load(data)
    return sum(len(_foldable(model, graph)) for graph in model.subgraphs or [])


def _has_densify(data: bytes) -> bool:
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        return True  # let _load say what is wrong
    try:
        root = _schema().Model.GetRootAs(data, 0)
        codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
    except Exception:  # a damaged flatbuffer: _load raises the one-line error
        return True
    return any(max(int(c.BuiltinCode()), int(c.DeprecatedBuiltinCode())) == _DENSIFY for c in codes)


def _foldable(model, graph) -> list[int]:
    found = []
    for index, op in enumerate(graph.operators or []):
        inputs, outputs = _ints(op.inputs), _ints(op.outputs)
        if _opcode(model.operatorCodes[op.opcodeIndex]) != _DENSIFY or len(inputs) != 1 or len(outputs) != 1:
            continue
        source = graph.tensors[inputs[0]]
        buffer = model.buffers[source.buffer] if source.buffer else None
        if source.sparsity is not None and buffer is not None and buffer.data is not None and source.type in _DTYPES:
            found.append(index)
    return found


def dense_values(shape: list[int], sparsity, stored: np.ndarray) -> np.ndarray:
    """The dense array a SparsityParameters + stored values describe (zeros where nothing is stored)."""
    levels = list(sparsity.dimMetadata or [])
    order = _ints(sparsity.traversalOrder) or list(range(len(levels)))
    block_map = _ints(sparsity.blockMap)
    rank = len(shape)
    if len(order) != len(levels) or len(levels) != rank + len(block_map):
        raise BadInputError("sparse TFLite tensor with inconsistent sparsity metadata")
    position = np.zeros(1, dtype=np.int64)
    coords: list[np.ndarray] = []
    for meta in levels:
        if meta.format == _DENSE:
            size = int(meta.denseSize)
            coords = [np.repeat(c, size) for c in coords]
            index = np.tile(np.arange(size, dtype=np.int64), len(position))
            position = np.repeat(position, size) * size + index
        else:
            segments = np.asarray(meta.arraySegments.values, dtype=np.int64)
            indices = np.asarray(meta.arrayIndices.values, dtype=np.int64)
            counts = segments[position + 1] - segments[position]
            coords = [np.repeat(c, counts) for c in coords]
            first = np.repeat(segments[position], counts)
            offset = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            position = first + offset
            index = indices[position]
        coords.append(index)
    if len(position) != stored.size:
        raise BadInputError(f"sparse TFLite tensor stores {stored.size} values where its metadata names "
                            f"{len(position)}")
    dense_index = [np.zeros(stored.size, dtype=np.int64) for _ in range(rank)]
    for level, dim in enumerate(order):
        if dim < rank:
            dense_index[dim] = coords[level]
    for level, dim in enumerate(order):
        if dim >= rank:  # a block level: the outer coordinate counts whole blocks
            target = block_map[dim - rank]
            dense_index[target] = dense_index[target] * int(levels[level].denseSize) + coords[level]
    dense = np.zeros(shape, dtype=stored.dtype)
    dense[tuple(dense_index)] = stored
    return dense


def densify_bytes(data: bytes) -> Densified:
    """Fold every DENSIFY of a constant sparse tensor into a dense constant; drop what is left unused."""

    def dense_bytes(model, source, target) -> bytes:
        stored = np.frombuffer(bytes(bytearray(model.buffers[source.buffer].data)), dtype=_DTYPES[source.type])
        dense = dense_values(_ints(target.shape) or _ints(source.shape), source.sparsity, stored)
        return dense.astype(_DTYPES[target.type]).tobytes()

    out, folded = fold_constant_ops(data, _foldable, dense_bytes, growth=4)
    return Densified(out, folded)
