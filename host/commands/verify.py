"""`k210 verify FILE.kmodel [--reference MODEL] [--dataset NAME | --data PATH]`: simulator vs TF, every output."""

from __future__ import annotations

import argparse

from ..cliutil import add_dataset_args, add_io_node_args, add_json_arg, finish, format_table, progress
from ..dataargs import add_preprocess_args, add_rule_args, add_save_io_arg, overrides_from, rule_flags_from

EPILOG = """examples:
  k210 verify out/xo.kmodel --dataset xo --limit 200
  k210 verify model.kmodel --reference model.keras --data photos/ --json-out verify.json
  k210 verify detector.kmodel --dataset random --postprocess mediapipe-face-front --tolerance 1:max_abs=2.0"""


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="compare a kmodel (nncase simulator) with its TF reference, every output",
                       description="Runs the kmodel in nncase's simulator and its TensorFlow reference on the same "
                                   "held-out inputs and judges every output by its pass rules (docs/pass-rules.md): "
                                   "top-1 agreement for class scores, cosine and error bounds for values, decoded "
                                   "boxes or masks for detectors and segmenters. Exit 1 when a rule fails.",
                       epilog=EPILOG)
    p.add_argument("kmodel", metavar="KMODEL", help="the .kmodel to check")
    p.add_argument("--reference", metavar="MODEL",
                   help="the model it came from (.keras/.h5/SavedModel/.pb/.tflite); default: the model card's")
    add_dataset_args(p)
    p.add_argument("--limit", type=int, metavar="N",
                   help="use the first N test inputs only (an image folder: N drawn by --seed; default: all of "
                        "them; random: 200)")
    p.add_argument("--min-agreement", type=float, default=0.99, metavar="FRACTION",
                   help="exit 1 below this top-1 agreement on class-score outputs (default 0.99)")
    p.add_argument("--min-cosine", type=float, default=0.99, metavar="COSINE",
                   help="exit 1 below this mean cosine on value outputs: boxes, landmarks, features (default 0.99)")
    add_rule_args(p)
    add_json_arg(p, old_output=True)
    add_save_io_arg(p)
    p.add_argument("--workers", type=int, metavar="N", help="simulator processes (default: one per core)")
    add_preprocess_args(p)
    add_io_node_args(p)
    p.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from ..verifying import VerifyRequest, verify

    report = verify(VerifyRequest(
        kmodel=args.kmodel, reference=args.reference, dataset=args.dataset, data=args.data, seed=args.seed,
        limit=args.limit, min_agreement=args.min_agreement, min_cosine=args.min_cosine,
        overrides=overrides_from(args), input_node=args.input_node, output_node=args.output_node,
        workers=args.workers, save_io=args.save_io, progress=progress, rules=rule_flags_from(args),
        on_calibration_data=args.on_calibration_data))
    return finish(args, report, text=lambda: render(report), passed=report["passed"],
                  failure=None if report["passed"] else failure_line(report),
                  inputs={"kmodel": report.get("kmodel"), "reference": report.get("reference")})


def failure_line(r: dict) -> str:
    return "; ".join(r.get("reasons") or []) or "the check failed"


def render(r: dict) -> str:
    from ..judge.render import outputs_table, tasks_lines

    # The verdict first (what most readers want), and again last, under the figures it sums up.
    lines = [verdict_line(r), f"{r['kmodel']} vs {r['reference']} on {r['count']} inputs of {r['dataset']}"]
    lines.append(outputs_table(r["outputs"]))
    lines += tasks_lines(r.get("tasks") or [])
    if "kmodel_accuracy" in r:
        lines.append(f"accuracy (output {r['primary_output']}): kmodel {r['kmodel_accuracy']:.4f}, "
                     f"TF reference {r['reference_accuracy']:.4f}")
    names = r.get("labels") or []
    if "confusion" in r and len(names) <= 12:
        lines.append("kmodel confusion (rows: true, columns: predicted):")
        lines.append(format_table(["", *names], [[names[i], *row] for i, row in enumerate(r["confusion"]["kmodel"])]))
    for reason in r.get("reasons") or []:
        lines.append(f"  why: {reason}")
    lines.append(verdict_line(r))
    return "\n".join(lines)


def verdict_line(r: dict) -> str:
    from ..judge.render import headline
    from ..verifying import check_data_phrase

    return headline(r) + check_data_phrase(r.get("check_data"))
