"""Output clamping: a model output's head layers get a clamp [lo, hi] right after them.

The K210 quantises each KPU layer's output with one uint8 scale over the range calibration measured. A
detector's score logits can span thousands (MediaPipe BlazeFace back: -10732..2 on photographs) where the
decision needs a few units around 0, so one step (42 there) wipes every score near the threshold. A
decoder that takes a sigmoid of the logit and compares it with a threshold reads the same detections
from a logit clamped to, say, -16..16 (sigmoid(-16) = 1.1e-7): MediaPipe's own TensorsToDetections
calculator clips raw scores the same way (its face detection graphs set score_clipping_thresh: 100).
Clamped in the float model, the head's range, and so its uint8 step, is what the clamp lets through.

The clamp is placed on each weighted layer (conv / depthwise / dense) that writes the output, found by
walking back through RESHAPE and CONCATENATION only: a MAXIMUM(x, lo) and a MINIMUM(., hi) right after
it, which nncase fuses into the conv as its activation range. An output with anything else in between
(a softmax, a sigmoid, an add), or a head whose value other layers also read, is refused: clamping
there would change more than that output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from k210.core.errors import BadInputError

from . import graph as g

PASS_THROUGH = ("RESHAPE", "CONCATENATION", "SQUEEZE")


@dataclass(frozen=True)
class Clamp:
    output: str  # the model output's name, or its index as text
    low: float
    high: float

    def flag(self) -> str:
        return f"--clamp-output={self.output}={self.low:g},{self.high:g}"


def parse_clamp(text: str) -> Clamp:
    """'NAME=LO,HI' (NAME: an output's name or index) -> Clamp; a one-line BadInputError otherwise."""
    name, sep, bounds = text.rpartition("=")
    parts = bounds.split(",")
    if not sep or not name or len(parts) != 2:
        raise BadInputError(f"--clamp-output '{text}': expected OUTPUT=LO,HI (e.g. classificators=-16,16)")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise BadInputError(f"--clamp-output '{text}': LO and HI must be numbers") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise BadInputError(f"--clamp-output '{text}': needs finite LO < HI")
    return Clamp(name, low, high)


def output_tensor(model: g.Model, name: str) -> int:
    outputs = [int(t) for t in model.graph.outputs]
    names = [model.tensor_name(t) for t in outputs]
    if name in names:
        return outputs[names.index(name)]
    if name.isdigit() and int(name) < len(outputs):
        return outputs[int(name)]
    raise BadInputError(f"--clamp-output: the model has no output '{name}' (outputs: {', '.join(names)})")


def heads(model: g.Model, tensor: int) -> list[g.WeightedOp]:
    """The weighted layers whose values reach `tensor` through RESHAPE/CONCATENATION only; BadInputError
    when anything else lies in between or a head's value is read elsewhere too."""
    producer = {int(t): i for i, op in enumerate(model.graph.operators) for t in op.outputs}
    found: list[g.WeightedOp] = []
    todo = [tensor]
    while todo:
        t = todo.pop()
        i = producer.get(t)
        if i is None:
            raise BadInputError(f"--clamp-output: '{model.tensor_name(tensor)}' is reached from the model's input "
                                "without a conv/dense layer: nothing to clamp")
        if i in model.weighted:
            op = model.weighted[i]
            if op.activation not in ("none", "relu"):
                raise BadInputError(f"--clamp-output: head {op.name} already ends in {op.activation}")
            found.append(op)
            continue
        if model.opcodes[i] not in PASS_THROUGH:
            raise BadInputError(f"--clamp-output: '{model.tensor_name(tensor)}' comes from {model.opcodes[i]} "
                                f"({model.tensor_name(t)}), not from a conv/dense head (through reshapes and "
                                "concatenations only): a clamp there would not narrow a KPU layer's range")
        inputs = [int(x) for x in model.graph.operators[i].inputs if int(x) >= 0]
        todo += inputs[:1] if model.opcodes[i] != "CONCATENATION" else inputs
    for op in found:
        readers = model.readers.get(op.out, [])
        if len(readers) + (op.out in model.outputs) > 1:
            raise BadInputError(f"--clamp-output: head {op.name} is also read by other layers: "
                                "clamping it would change them too")
    return found


def clamp_outputs(tflite: bytes, clamps: list[Clamp]) -> tuple[bytes, list[dict]]:
    """`tflite` with each clamp's heads clamped; what was clamped, head by head."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = g.Model(tflite)
    done: list[dict] = []
    plan: list[tuple[g.WeightedOp, Clamp, int]] = []
    outputs = [int(t) for t in model.graph.outputs]
    for clamp in clamps:
        tensor = output_tensor(model, clamp.output)
        for op in heads(model, tensor):
            if any(op.index == other.index for other, _, _ in plan):
                raise BadInputError(f"--clamp-output: head {op.name} named by two clamps")
            plan.append((op, clamp, outputs.index(tensor)))
    codes = {}
    for builtin in (schema.BuiltinOperator.MAXIMUM, schema.BuiltinOperator.MINIMUM):
        codes[builtin] = _opcode_index(model, builtin)
    graph = model.graph
    for op, clamp, index in sorted(plan, key=lambda p: -p[0].index):  # from the back: earlier indices stay valid
        final = op.out
        raw = _new_tensor(model, final, "/unclamped")
        mid = _new_tensor(model, final, "/clamped_low")
        graph.operators[op.index].outputs = np.array([raw], np.int32)
        low = _scalar(model, clamp.low, f"{op.name}/clamp_low")
        high = _scalar(model, clamp.high, f"{op.name}/clamp_high")
        ops = [_binary(codes[schema.BuiltinOperator.MAXIMUM], raw, low, mid),
               _binary(codes[schema.BuiltinOperator.MINIMUM], mid, high, final)]
        graph.operators[op.index + 1: op.index + 1] = ops
        done.append({"output": clamp.output, "output_index": index, "head": op.name, "opcode": op.opcode,
                     "low": clamp.low, "high": clamp.high})
    return model.to_bytes(), sorted(done, key=lambda d: d["head"])


def clipped_reference(tflite: bytes, clamps: list[Clamp], reference: list[np.ndarray]) -> list[np.ndarray]:
    """The original float outputs as the clamped model should give them: each clamped output clipped."""
    model = g.Model(tflite)
    outputs = [int(t) for t in model.graph.outputs]
    bounds = {outputs.index(output_tensor(model, c.output)): (c.low, c.high) for c in clamps}
    return [np.clip(r, *bounds[i]) if i in bounds else r for i, r in enumerate(reference)]


def clip_as_recorded(clamped: list[dict] | None, reference: list[np.ndarray]) -> list[np.ndarray]:
    """Reference outputs (in the TFLite model's output order) clipped as a card's transforms report says
    (`clamped`: one entry per head, with the output's index and bounds): what verify compares against."""
    bounds = {int(c["output_index"]): (float(c["low"]), float(c["high"])) for c in clamped or []
              if "output_index" in c}
    return [np.clip(r, *bounds[i]) if i in bounds else r for i, r in enumerate(reference)]


def _opcode_index(model: g.Model, builtin: int) -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    for i, code in enumerate(model.model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = builtin  # both below 127: old readers look here
    code.version = 1
    model.model.operatorCodes.append(code)
    return len(model.model.operatorCodes) - 1


def _new_tensor(model: g.Model, like: int, suffix: str) -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    source = model.graph.tensors[like]
    tensor = schema.TensorT()
    tensor.shape = None if source.shape is None else np.array(source.shape, np.int32)
    tensor.shapeSignature = None if source.shapeSignature is None else np.array(source.shapeSignature, np.int32)
    tensor.type = source.type
    tensor.name = model.tensor_name(like) + suffix
    tensor.buffer = _buffer(model, None)
    model.graph.tensors.append(tensor)
    return len(model.graph.tensors) - 1


def _scalar(model: g.Model, value: float, name: str) -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    tensor = schema.TensorT()
    tensor.shape = np.array([], np.int32)
    tensor.type = 0  # float32
    tensor.name = name
    tensor.buffer = _buffer(model, np.frombuffer(np.float32(value).tobytes(), np.uint8).copy())
    model.graph.tensors.append(tensor)
    return len(model.graph.tensors) - 1


def _buffer(model: g.Model, data: np.ndarray | None) -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = data
    model.model.buffers.append(buffer)
    return len(model.model.buffers) - 1


def _binary(opcode: int, a: int, b: int, out: int):
    from tensorflow.lite.python import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.array([a, b], np.int32)
    op.outputs = np.array([out], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.MaximumMinimumOptions
    op.builtinOptions = schema.MaximumMinimumOptionsT()
    return op
