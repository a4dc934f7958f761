"""`k210 freeze MODEL`: a frozen GraphDef `.pb` with `input_node` / `output_node`, as the course does."""

from __future__ import annotations

import argparse

from ..cliutil import add_io_node_args, add_json_arg, finish, output_path


def add_parser(sub) -> None:
    p = sub.add_parser("freeze", help="write a frozen GraphDef .pb (input_node/output_node, batch None)")
    p.add_argument("model", help="Keras model (.keras or .h5)")
    p.add_argument("-o", "--output", help="output .pb (default: next to the model)")
    add_io_node_args(p, input_default="input_node", output_default="output_node",
                     what="name in the frozen graph (default: %(default)s)")
    # The names before the one --input-node/--output-node of every other command; kept, hidden.
    p.add_argument("--input-name", dest="input_node", help=argparse.SUPPRESS)
    p.add_argument("--output-name", dest="output_node", help=argparse.SUPPRESS)
    add_json_arg(p)
    p.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from k210.converters.freeze import freeze_keras
    from k210.converters.sources import ModelFormat, detect
    from k210.converters.to_tflite import load_keras
    from k210.core.errors import BadInputError
    from k210.core.fsutil import write_bytes_atomic

    from ..sidecars import meta_path

    source = detect(args.model)
    if source.format is not ModelFormat.KERAS:
        raise BadInputError(f"freeze takes a Keras model (.keras/.h5), not a {source.format.value}")
    out = output_path(args.output, source.path.with_suffix(".pb"), ".pb")
    data = freeze_keras(load_keras(source.path), input_node=args.input_node, output_node=args.output_node)
    write_bytes_atomic(out, data)
    meta_in, meta_out = meta_path(source.path), meta_path(out)
    if meta_in.is_file() and meta_in != meta_out:
        write_bytes_atomic(meta_out, meta_in.read_bytes())  # labels and preprocessing travel with the graph
    result = {"output": str(out), "bytes": len(data), "input_node": args.input_node, "output_node": args.output_node}
    text = f"froze {source.path} -> {out} ({len(data)} bytes; nodes {args.input_node} -> {args.output_node})"
    return finish(args, result, text=text, inputs={"model": source.path})
