"""`k210 lint MODEL`: will this model run on a K210, and where (KPU, KPU with pad/crop, CPU, not at all)?"""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lint",
        help="check a model against nncase's op lists and the KPU's rules: what runs where, and does it fit",
        description="Exit 0: compiles and fits; 1: cannot be compiled or does not fit (or CPU fallbacks with "
                    "--strict); 2: bad input.",
    )
    p.add_argument("model", help=".keras, .h5, SavedModel directory, frozen .pb, .tflite, .onnx or .kmodel")
    p.add_argument("--compiler", choices=("nncase1.9", "nncase0.2"), default="nncase1.9",
                   help="nncase1.9 makes kmodel v5 (CanMV feat/kpu, C SDK); nncase0.2 makes kmodel v4 (MaixPy-v1) "
                        "(default nncase1.9)")
    p.add_argument("--quant", choices=("uint8", "float"), default="uint8",
                   help="how it will be compiled: uint8 PTQ uses the KPU; float runs everything on the CPU "
                        "(default uint8)")
    p.add_argument("--strict", action="store_true", help="also fail when a conv or Dense falls back to the CPU")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--input-node", help="input node of a frozen .pb (found when unambiguous)")
    p.add_argument("--output-node", help="output node of a frozen .pb (found when unambiguous)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from k210.host.lint import lint_path

    from ..cliutil import print_json

    report = lint_path(args.model, compiler=args.compiler, quant=args.quant, input_node=args.input_node,
                       output_node=args.output_node)
    if args.json:
        data = report.to_dict()
        data["strict"] = args.strict
        data["passes"] = report.passes(args.strict)
        print_json(data)
    else:
        print(report.render_text(strict=args.strict))
    return report.exit_code(args.strict)
