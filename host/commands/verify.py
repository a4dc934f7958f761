"""`k210 verify FILE.kmodel [--reference MODEL] [--dataset NAME | --data PATH]`: simulator vs TF, every output."""

from __future__ import annotations

import argparse

from ..cliutil import add_dataset_args, add_io_node_args, add_json_arg, finish, format_table, json_output_path, progress
from ..dataargs import add_preprocess_args, add_save_io_arg, overrides_from


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="compare a kmodel (nncase simulator) with its TF reference, every output")
    p.add_argument("kmodel", help="the .kmodel to check")
    p.add_argument("--reference", help="the model it came from (.keras/.h5/SavedModel/.pb/.tflite); "
                                       "default: the model card's")
    add_dataset_args(p)
    p.add_argument("--limit", type=int,
                   help="use the first N test inputs only (an image folder: N drawn by --seed; random: N, default 200)")
    p.add_argument("--min-agreement", type=float, default=0.99,
                   help="exit 1 below this top-1 agreement on class-score outputs (0.99)")
    p.add_argument("--min-cosine", type=float, default=0.99,
                   help="exit 1 below this mean cosine on other outputs: boxes, features (0.99)")
    add_json_arg(p, output=True)
    add_save_io_arg(p)
    p.add_argument("--workers", type=int, help="simulator processes (default: one per core)")
    add_preprocess_args(p)
    add_io_node_args(p)
    p.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from ..verifying import VerifyRequest, verify

    json_out = json_output_path(args.output)
    report = verify(VerifyRequest(
        kmodel=args.kmodel, reference=args.reference, dataset=args.dataset, data=args.data, seed=args.seed,
        limit=args.limit, min_agreement=args.min_agreement, min_cosine=args.min_cosine,
        overrides=overrides_from(args), input_node=args.input_node, output_node=args.output_node,
        workers=args.workers, save_io=args.save_io, progress=progress))
    return finish(args, report, text=lambda: render(report), passed=report["passed"], files=[json_out],
                  failure=None if report["passed"] else failure_line(report),
                  inputs={"kmodel": report.get("kmodel"), "reference": report.get("reference")})


def failure_line(r: dict) -> str:
    failed = [o for o in r["outputs"] if not o["passed"]]
    parts = [f"output {o['output']} top-1 agreement {o['agreement']:.4f} is below {r['min_agreement']}"
             if "agreement" in o else f"output {o['output']} cosine {o['cosine']:.4f} is below {r['min_cosine']}"
             for o in failed]
    return "; ".join(parts)


def render(r: dict) -> str:
    # The verdict first (what most readers want), and again last, under the figures it sums up.
    lines = [verdict_line(r), f"{r['kmodel']} vs {r['reference']} on {r['count']} inputs of {r['dataset']}"]
    rows = []
    for o in r["outputs"]:
        agreement = f"{o['agreement']:.4f}" if "agreement" in o else "-"
        rows.append((o["output"], "x".join(map(str, o["shape"])) or "1", agreement, f"{o['max_abs_error']:.3g}",
                     f"{o['mae']:.3g}", f"{o['rmse']:.3g}", f"{o['l2_relative_error']:.3g}", f"{o['cosine']:.6f}",
                     f"{o['nse']:.4f}", "ok" if o["passed"] else "FAIL"))
    lines.append(format_table(("output", "shape", "top-1 agree", "max abs", "MAE", "RMSE", "L2 rel", "cosine", "NSE",
                               ""), rows))
    if "kmodel_accuracy" in r:
        lines.append(f"accuracy (output {r['primary_output']}): kmodel {r['kmodel_accuracy']:.4f}, "
                     f"TF reference {r['reference_accuracy']:.4f}")
    names = r.get("labels") or []
    if "confusion" in r and len(names) <= 12:
        lines.append("kmodel confusion (rows: true, columns: predicted):")
        lines.append(format_table(["", *names], [[names[i], *row] for i, row in enumerate(r["confusion"]["kmodel"])]))
    lines.append(verdict_line(r))
    return "\n".join(lines)


def verdict_line(r: dict) -> str:
    verdict = "PASS" if r["passed"] else "FAIL"
    if "agreement" in r:
        return (f"{verdict}: agreement {r['agreement']:.4f} (minimum {r['min_agreement']})"
                + (f", {len(r['outputs'])} outputs compared" if len(r["outputs"]) > 1 else ""))
    return f"{verdict}: cosine {r['cosine']:.6f} (minimum {r['min_cosine']}), {len(r['outputs'])} output(s) compared"
