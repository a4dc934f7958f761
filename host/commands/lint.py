"""`k210 lint MODEL`: will this model run on a K210, and where (KPU, KPU with pad/crop, CPU, not at all)?"""

from __future__ import annotations

import argparse

from k210.core import firmwares

from ..cliutil import FIRMWARES, add_firmware_arg, add_io_node_args, add_json_arg, finish, firmware_of_kmodel
from ..vocabulary import DeprecatedOption

# The compiler that makes the kmodel a firmware loads: MaixPy-v1 loads v3/v4 (nncase 0.2 makes v4),
# CanMV's feat/kpu and the C SDK load v5 (nncase 1.9, what `k210 compile` runs).
COMPILER_FOR = {fw.key: fw.compiler for fw in firmwares.FIRMWARES.values()}

EPILOG = """examples:
  k210 lint out/models/xo_mlp.keras
  k210 lint net.tflite --strict --confirm          # nncase's own build settles the memory figure
  k210 lint old.kmodel --firmware maixpy            # exit 1: MaixPy-v1 cannot load a kmodel v5"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lint",
        help="check a model against nncase's op lists and the KPU's rules: what runs where, and does it fit",
        description="Reads the model's graph and says, layer by layer, whether it runs on the KPU, on the KPU "
                    "with padding or cropping, on the CPU or not at all, and whether it fits the K210's 6 MiB. "
                    "Exit 0: compiles and fits; 1: cannot be compiled or does not fit (or, with --strict, a "
                    "conv or Dense falls back to the CPU); 2: bad input.",
        epilog=EPILOG,
    )
    p.add_argument("model", metavar="MODEL",
                   help=".keras, .h5, SavedModel directory, frozen .pb, .tflite, .onnx or .kmodel")
    add_firmware_arg(p, FIRMWARES, what="the firmware that will load it, which picks the compiler ("
                     + ", ".join(f"{key}: {compiler}" for key, compiler in COMPILER_FOR.items())
                     + "); a .kmodel it cannot load fails")
    p.add_argument("--compiler", choices=tuple(sorted(set(COMPILER_FOR.values()))), action=DeprecatedOption,
                   new="--firmware (which picks the compiler)")
    p.add_argument("--quant", choices=("uint8", "float"), default="uint8",
                   help="how it will be compiled: uint8 PTQ uses the KPU; float runs everything on the CPU "
                        "(default uint8, like k210 compile)")
    p.add_argument("--strict", action="store_true", help="also fail when a conv or Dense falls back to the CPU")
    p.add_argument("--confirm", action="store_true",
                   help="also compile it with nncase 1.9 (child process, seeded random calibration) and print "
                        "nncase's own TOTAL, modules and KPU/CPU conv counts beside lint's; nncase's figures then "
                        "decide what lint only estimates (takes seconds to minutes)")
    add_json_arg(p)
    add_io_node_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from k210.host.lint import lint_path
    from k210.host.lint.render import render_report

    is_kmodel = str(args.model).lower().endswith(".kmodel")
    firmware = (args.firmware or _firmware_of_compiler(args.compiler)
                or firmware_of_kmodel(args.model if is_kmodel else None))
    compiler = args.compiler or COMPILER_FOR[firmware]
    report = lint_path(args.model, compiler=compiler, quant=args.quant, input_node=args.input_node,
                       output_node=args.output_node)
    version = (report.kmodel or {}).get("version") if report.format == "kmodel" else None
    refusal = firmwares.cannot_load(firmware, version) if version in firmwares.KMODEL_VERSIONS else None
    if refusal:  # the same refusal flash and deploy make for this firmware
        report.problems.append(f"kmodel is {refusal}")
    if args.confirm:
        from k210.host.lint import confirm_path

        report = confirm_path(report, args.model, compiler=compiler, quant=args.quant, input_node=args.input_node,
                              output_node=args.output_node)
    passed = report.passes(args.strict)
    data = report.to_dict()
    # `firmware` is one firmware name in every command's JSON; which ones load the result is `loaders`.
    data["loaders"] = data.pop("firmware", [])
    data.update(firmware=firmware, strict=args.strict, passed=passed)
    return finish(args, data, text=lambda: render_report(report, strict=args.strict), passed=passed,
                  inputs={"model": args.model})


def _firmware_of_compiler(compiler: str | None) -> str | None:
    """The firmware a hidden --compiler stands for when only one firmware's usual compiler is it."""
    keys = [key for key, made_by in COMPILER_FOR.items() if made_by == compiler]
    return keys[0] if len(keys) == 1 else None
