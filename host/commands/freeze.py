"""`k210 freeze MODEL`: a frozen GraphDef `.pb` with `input_node` / `output_node`, as the course does."""

from __future__ import annotations

import argparse

from ..cliutil import add_io_node_args, add_json_arg, finish, output_path
from ..vocabulary import add_deprecated

EPILOG = """examples:
  k210 freeze out/models/xo_mlp.keras -o out/xo.pb
  k210 freeze net.h5 --input-node image --output-node scores"""


def add_parser(sub) -> None:
    p = sub.add_parser("freeze", help="write a frozen GraphDef .pb (input_node/output_node, batch None)",
                       description="Freezes a Keras model into a TF1-style GraphDef .pb whose input and output "
                                   "nodes have the names the course's tools expect; its .meta.json (labels, "
                                   "preprocessing) is copied beside it.",
                       epilog=EPILOG)
    p.add_argument("model", metavar="MODEL", help="Keras model (.keras or .h5)")
    p.add_argument("-o", "--output", metavar="FILE.pb", help="the .pb to write (default: next to the model, NAME.pb)")
    add_io_node_args(p, input_default="input_node", output_default="output_node",
                     what="name in the frozen graph (default: %(default)s)")
    # The names before the one --input-node/--output-node of every other command: deprecated, hidden.
    for old, new in (("--input-name", "--input-node"), ("--output-name", "--output-node")):
        add_deprecated(p, (old,), next(a for a in p._actions if new in a.option_strings))
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
