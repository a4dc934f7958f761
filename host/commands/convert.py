"""`k210 convert MODEL`: Keras/.h5/SavedModel/frozen .pb -> TFLite (batch fixed to 1)."""

from __future__ import annotations

import argparse

from ..cliutil import add_io_node_args, add_json_arg, finish, output_path

EPILOG = """examples:
  k210 convert out/models/xo_mlp.keras -o out/xo.tflite
  k210 convert frozen.pb --input-node input_node --output-node output_node"""


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a Keras/.h5/SavedModel/.pb model to TFLite",
                       description="Converts a Keras model, SavedModel or frozen GraphDef to a float TFLite "
                                   "flatbuffer with the batch fixed to 1, as nncase wants it.",
                       epilog=EPILOG)
    p.add_argument("model", metavar="MODEL", help=".keras, .h5, SavedModel directory or frozen .pb")
    p.add_argument("-o", "--output", metavar="FILE.tflite",
                   help="the .tflite to write (default: next to the model, NAME.tflite)")
    add_io_node_args(p)
    add_json_arg(p)
    p.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from k210.converters.sources import ModelFormat, detect
    from k210.converters.to_tflite import convert_to_tflite
    from k210.core.errors import BadInputError
    from k210.core.fsutil import write_bytes_atomic

    source = detect(args.model)
    if source.format in (ModelFormat.TFLITE, ModelFormat.KMODEL, ModelFormat.ONNX):
        raise BadInputError(f"{source.path} is already a {source.format.value} model")
    out = output_path(args.output, source.path.parent / f"{source.name}.tflite", ".tflite")
    result = convert_to_tflite(source, input_node=args.input_node, output_node=args.output_node)
    write_bytes_atomic(out, result.data)
    notes = f" ({'; '.join(result.notes)})" if result.notes else ""
    summary = {"output": str(out), "bytes": len(result.data), "input_name": result.input_name,
               "input_shape": list(result.input_shape) if result.input_shape is not None else None,
               "notes": list(result.notes)}
    text = f"converted {source.path} -> {out}: input {result.input_name} {result.input_shape}{notes}"
    return finish(args, summary, text=text, inputs={"model": source.path})
