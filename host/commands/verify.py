"""`k210 verify FILE.kmodel --reference MODEL --dataset NAME`: kmodel in nncase's simulator vs TF."""

from __future__ import annotations

import argparse

from ..cliutil import add_dataset_args, add_io_node_args, format_table, progress


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="compare a kmodel (nncase simulator) with its TF reference on a dataset")
    p.add_argument("kmodel", help="the .kmodel to check")
    p.add_argument("--reference", required=True, help="the model it came from (.keras/.h5/SavedModel/.pb/.tflite)")
    add_dataset_args(p)
    p.add_argument("--limit", type=int, help="use the first N test images only")
    p.add_argument("--min-agreement", type=float, default=0.99, help="exit 1 below this top-1 agreement (0.99)")
    p.add_argument("--json", metavar="OUT", help="write the figures to OUT as JSON")
    p.add_argument("--workers", type=int, help="simulator processes (default: one per core)")
    add_io_node_args(p)
    p.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from k210.converters.kmodel import parse_kmodel
    from k210.converters.reference import load_reference
    from k210.converters.simulate import simulate
    from k210.converters.sources import detect

    from ..cliutil import load_dataset_arg
    from ..errors import BadInputError, CheckFailed
    from ..fsutil import require_file, write_json_atomic
    from ..sidecars import read_card
    from ..verifying import prepare_inputs, verify_report

    kmodel_path = require_file(args.kmodel, "kmodel")
    kmodel = kmodel_path.read_bytes()
    info = parse_kmodel(kmodel)
    card = read_card(kmodel_path) or {}
    dataset_name = args.dataset or (card.get("quantisation", {}).get("calibration") or {}).get("dataset")
    if not dataset_name:
        raise BadInputError("which dataset? pass --dataset NAME")
    if args.limit is not None and args.limit < 1:
        raise BadInputError("--limit must be at least 1")
    if not 0 <= args.min_agreement <= 1:
        raise BadInputError("--min-agreement must be between 0 and 1")
    source = detect(args.reference)
    dataset = load_dataset_arg(args, dataset_name)
    images, labels = dataset.x_test[: args.limit], dataset.y_test[: args.limit]
    inputs = prepare_inputs(images, labels, info.inputs[0])

    predict = load_reference(source, input_node=args.input_node, output_node=args.output_node)
    reference_out = predict(inputs.reference)
    with progress(len(images), "simulating kmodel") as bar:
        kmodel_out = simulate(kmodel, inputs.kmodel, workers=args.workers, progress=bar.update)
    report = verify_report(reference_out, kmodel_out, inputs.labels, list(dataset.labels))
    report.update({"kmodel": str(kmodel_path), "reference": str(source.path), "dataset": dataset.name,
                   "min_agreement": args.min_agreement, "passed": report["agreement"] >= args.min_agreement})
    if args.json:
        write_json_atomic(args.json, report)
    print(render(report))
    if not report["passed"]:
        raise CheckFailed(f"top-1 agreement {report['agreement']:.4f} is below {args.min_agreement}")
    return 0


def render(r: dict) -> str:
    rows = [
        ("images", r["count"]),
        ("reference accuracy", f"{r['reference_accuracy']:.4f}"),
        ("kmodel accuracy", f"{r['kmodel_accuracy']:.4f}"),
        ("top-1 agreement", f"{r['agreement']:.4f}"),
        ("max abs error", f"{r['max_abs_error']:.3g}"),
        ("MAE", f"{r['mae']:.3g}"),
        ("RMSE", f"{r['rmse']:.3g}"),
        ("cosine", f"{r['cosine']:.6f}"),
        ("L2 relative error", f"{r['l2_relative_error']:.3g}"),
    ]
    lines = [f"{r['kmodel']} vs {r['reference']} on {r['dataset']}", format_table(("metric", "value"), rows)]
    names = r["labels"]
    if len(names) <= 12:
        lines.append("kmodel confusion (rows: true, columns: predicted):")
        lines.append(format_table(["", *names], [[names[i], *row] for i, row in enumerate(r["confusion"]["kmodel"])]))
    verdict = "PASS" if r["passed"] else "FAIL"
    lines.append(f"{verdict}: agreement {r['agreement']:.4f} (minimum {r['min_agreement']})")
    return "\n".join(lines)
