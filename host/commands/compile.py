"""`k210 compile MODEL`: lint, then compile to a K210 kmodel with nncase 1.9, plus a model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import add_dataset_args, add_io_node_args, add_json_arg, finish, fit_width, output_path
from ..dataargs import add_preprocess_args, overrides_from

EPILOG = """examples:
  k210 compile out/models/xo_mlp.keras --dataset xo -o out/xo.kmodel
  k210 compile net.tflite --quant float                          # CPU only, no calibration data
  k210 compile net.keras --data photos/ --input-range -1,1 --calibrate-method l2 --equalize"""


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile a model to a K210 kmodel (float or uint8 PTQ) with a model card",
                       description="Lints the model, converts it to TFLite and compiles it with nncase 1.9 into a "
                                   "kmodel v5, calibrating uint8 on --dataset or --data. Beside the kmodel goes its "
                                   "model card (NAME.kmodel.json): source, preprocessing, labels, calibration, "
                                   "memory, which firmware loads it; verify, hil, flash and deploy read it.",
                       epilog=EPILOG)
    p.add_argument("model", metavar="MODEL", help=".keras, .h5, SavedModel directory, frozen .pb or .tflite")
    p.add_argument("-o", "--output", metavar="FILE.kmodel",
                   help="the kmodel to write (default: next to the model, NAME_QUANT.kmodel)")
    p.add_argument("--quant", choices=("uint8", "float"), default="uint8",
                   help="uint8 (default, as lint assumes): post-training quantisation, the convs and Dense run on "
                        "the KPU; it calibrates on --dataset, by default the one the model was trained on (its "
                        ".meta.json). float: everything on the CPU, ~4x larger, no calibration data needed")
    p.add_argument("--calib", type=int, default=200, metavar="N",
                   help="calibration samples for --quant uint8 (default 200)")
    p.add_argument("--holdout", type=float, metavar="FRACTION",
                   help="of your own --data (folder or arrays), the share kept out of calibration for verify/hil's "
                        "checks (default 0.8; 0: calibrate on all of it, e.g. a calibration-only folder)")
    p.add_argument("--input-type", choices=("float32", "uint8"),
                   help="what the board sends: uint8 raw pixels (default with --quant uint8) or float32")
    p.add_argument("--no-lint", action="store_true", help="skip the compatibility lint before compiling")
    p.add_argument("--no-lint-gate", action="store_true",
                   help="lint's memory estimate does not refuse: nncase's full build and its TOTAL decide (by "
                        "default an estimate beyond 6 MiB by more than lint's error refuses at once, and one near "
                        "the line is settled by a quick nncase build on random samples before calibration)")
    p.add_argument("--output-kind", action="append", default=[], metavar="OUTPUT=KIND",
                   help="record in the card how verify/hil judge an output: scores or values (repeatable; "
                        "default: guessed from the output's shape)")
    p.add_argument("--postprocess", metavar="PRESET|FILE.json|JSON",
                   help="record in the card the decoder verify/hil judge this detector or segmenter by (presets: "
                        "mediapipe-face-front, axelerate-yolo2, mask; default: none)")
    add_quant_fix_args(p)
    add_json_arg(p)
    add_dataset_args(p)
    add_preprocess_args(p)
    add_io_node_args(p)
    p.set_defaults(func=run)  # compile_model loads TensorFlow itself, after a .tflite's lint gate


def run(args: argparse.Namespace) -> int:
    from ..compiling import LintRefused

    model = Path(args.model)
    default = model.parent / f"{model.stem if model.suffix else model.name}_{args.quant}.kmodel"
    out = output_path(args.output, default, ".kmodel")
    try:
        card = _compile(args, model, out)
    except LintRefused as exc:  # the report on stdout (with --json: `k210 lint --json`), the one line on stderr
        if not args.json:
            print(exc.report_text, flush=True)
        raise
    return finish(args, card, text=lambda: fit_width(_text(card, model, out, args.quant)), inputs={"model": model})


def _compile(args: argparse.Namespace, model: Path, out: Path) -> dict:
    from ..compiling import CompileRequest, compile_model

    return compile_model(CompileRequest(
        model=model, output=out, quant=args.quant, input_type=args.input_type, overrides=overrides_from(args),
        dataset=args.dataset, data_path=args.data, calib=args.calib, holdout=args.holdout, seed=args.seed,
        input_node=args.input_node, output_node=args.output_node, lint=not args.no_lint,
        lint_gate=not args.no_lint_gate,
        output_kinds=_output_kinds(args.output_kind), postprocess=_postprocess(args.postprocess),
        calibrate_method=args.calibrate_method, mse_weights=args.mse_weights, transforms=transform_options(args),
    ))


def add_quant_fix_args(p) -> None:
    """The uint8 fixes `k210 explain` tries, each one a compile flag (explain prints the line of its best)."""
    from k210.converters.compile import CALIBRATE_METHODS

    group = p.add_argument_group("uint8 quantisation fixes (k210 explain tries them and prints the best line)")
    group.add_argument("--calibrate-method", choices=CALIBRATE_METHODS, default="no_clip",
                       help="how nncase sets activation ranges from the calibration samples (default no_clip: "
                            "min/max; l2 and kld_* clip rare outliers)")
    group.add_argument("--mse-weights", action="store_true",
                       help="quantise the KPU weights by least squares (nncase's use_mse_quant_w) instead of min/max")
    group.add_argument("--equalize", action="store_true",
                       help="cross-layer equalisation before nncase: conv/depthwise/dense pairs joined by a ReLU or "
                            "nothing get their channels' ranges evened out (the float model stays the same; "
                            "ReLU6 pairs are skipped and listed in the card)")
    group.add_argument("--absorb-bias", action="store_true",
                       help="high-bias absorption: channel offsets moved into the next 1x1/dense layer's bias")
    group.add_argument("--bias-correct", action="store_true",
                       help="empirical bias correction: each KPU conv's bias cancels the mean error its uint8 "
                            "weights add, measured on the calibration data")
    group.add_argument("--relu6-as-relu", action="store_true",
                       help="with --equalize/--dfq: a ReLU6 that the calibration data never bring near 6 becomes a "
                            "ReLU so that its pair can be equalised (the float model then differs only for inputs "
                            "that would reach 6 there; the card lists each layer and its peak)")
    group.add_argument("--dfq", action="store_true",
                       help="all three: --equalize --absorb-bias --bias-correct (data-free quantisation, "
                            "Nagel et al. 2019)")
    add_clamp_arg(group)


def add_clamp_arg(group) -> None:
    group.add_argument("--clamp-output", action="append", default=[], metavar="OUTPUT=LO,HI",
                       help="clamp a model output (name or index) to LO..HI in the float model, at the conv/dense "
                            "layers that write it, so that its uint8 step spans only that range: for score logits "
                            "a decoder reads through a sigmoid and a threshold (e.g. classificators=-16,16); the "
                            "float model is checked to equal the original clipped to LO..HI (repeatable; default: "
                            "none)")


def transform_options(args: argparse.Namespace):
    from k210.converters.transforms import TransformOptions
    from k210.converters.transforms.clamp import parse_clamp

    return TransformOptions(equalize=args.equalize or args.dfq, absorb_bias=args.absorb_bias or args.dfq,
                            bias_correct=args.bias_correct or args.dfq, relu6_as_relu=args.relu6_as_relu,
                            clamps=tuple(parse_clamp(c) for c in args.clamp_output))


def _output_kinds(items: list[str]) -> dict[int, str]:
    from ..judge.rules import parse_output_kinds

    return parse_output_kinds(items)


def _postprocess(text: str | None) -> dict | None:
    from ..judge.tasks import load_postprocess

    return load_postprocess(text)


def _text(card: dict, model: Path, out: Path, quant: str) -> str:
    lines = []
    km, mem = card["kmodel"], card["memory"]
    where = "KPU + CPU (k210 module present)" if km["kpu_code"] else "CPU only (no k210 module)"
    lines.append(f"compiled {model} -> {out}")  # the card keeps the path relative to itself
    lines.append(f"  kmodel v{km['version']}, {km['size']} bytes, modules {', '.join(km['modules'])}: {where}")
    ins = card["inputs"][0]
    outs = ", ".join(f"{o['dtype']}{o['shape']}" for o in card["outputs"])
    label = "outputs" if len(card["outputs"]) > 1 else "output"
    lines.append(f"  input  {ins['dtype']}{ins['shape']}  {label} {outs}  quant {quant}")
    prep = card.get("preprocessing") or {}
    if prep.get("summary"):
        lines.append(f"  preprocessing {prep['summary']}")
    calibration = (card.get("quantisation") or {}).get("calibration")
    if calibration:
        lines.append(f"  calibrated on {calibration['samples']} inputs: {calibration.get('source')} "
                     f"(method {calibration.get('method')}"
                     f"{', least-squares weights' if calibration.get('use_mse_quant_w') else ''})")
    transforms = (card.get("quantisation") or {}).get("transforms")
    if transforms:
        lines.append(f"  transforms {', '.join(transforms['transforms'])}: {len(transforms['pairs'])} layer pair(s) "
                     f"changed, {len(transforms['skipped'])} skipped"
                     + (f", float outputs within {transforms['float_difference']:.1e} of the original"
                        if transforms.get("float_difference") is not None else ""))
        if calibration.get("holdout"):
            lines.append(f"  {calibration['holdout']:.0%} of that data held out of calibration: verify and hil check "
                         "on it (the calibration samples' hashes are in the card)")
    if mem:
        lines.append("  memory " + ", ".join(f"{k} {v}" for k, v in mem.items()))
    for note in card["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"  model card {out.name}.json")
    return "\n".join(lines)
