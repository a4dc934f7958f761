"""`k210 explain MODEL --dataset NAME`: where a uint8 kmodel loses accuracy, why, and what helps."""

from __future__ import annotations

import argparse

from ..cliutil import add_dataset_args, add_io_node_args, add_json_arg, finish
from ..dataargs import add_preprocess_args, overrides_from
from ..vocabulary import add_deprecated

EPILOG = """examples:
  k210 explain out/models/xo_mlp.keras --dataset xo --calib 64 --limit 100
  k210 explain net.keras --data photos/ --input-range -1,1 --report out/explain --keep out/builds
  k210 explain net.tflite --dataset random --no-fixes --json-out explain.json"""


def add_parser(sub) -> None:
    from k210.converters.compile import CALIBRATE_METHODS

    from .compile import add_clamp_arg

    p = sub.add_parser(
        "explain", help="per-layer quantisation error of the uint8 kmodel, the first bad layer (KPU or CPU), "
                        "and the fixes tried with the agreement each reached",
        description="Compiles the model to a uint8 kmodel, runs it in nncase's simulator beside TFLite layer by "
                    "layer on held-out inputs, names the first layer that goes wrong and why (a per-tensor step "
                    "that wipes channels, an outlier-stretched range, a CPU op), then tries the fixes (more "
                    "calibration samples, calibration methods, graph transforms, float) and prints the k210 "
                    "compile line of the best.",
        epilog=EPILOG)
    p.add_argument("model", metavar="MODEL", help=".keras, .h5, SavedModel directory, frozen .pb or .tflite")
    add_dataset_args(p, default_text="none, give --dataset or --data")
    p.add_argument("--calib", type=int, default=200, metavar="N",
                   help="calibration samples of the baseline build (default 200)")
    p.add_argument("--more-calib", type=int, default=None, metavar="N",
                   help="calibration samples of the 'more samples' fix (default 4x --calib, as the data allow)")
    p.add_argument("--limit", type=int, default=200, metavar="N",
                   help="check inputs agreement is measured on (default 200)")
    p.add_argument("--input-type", choices=("uint8", "float32"), default="uint8",
                   help="what the board sends in the baseline build (default uint8 raw pixels, as compile)")
    method = p.add_argument("--calibrate-method", dest="method", default="no_clip", choices=CALIBRATE_METHODS,
                            help="calibration method of the baseline, as compile's flag (default no_clip)")
    add_deprecated(p, ("--method",), method)
    p.add_argument("--probes", type=int, default=24, metavar="N",
                   help="tensors made kmodel outputs per probe build (default 24)")
    p.add_argument("--probe-images", type=int, default=8, metavar="N",
                   help="check inputs the probes run on (default 8)")
    p.add_argument("--min-cosine", type=float, default=0.98, metavar="COSINE",
                   help="a layer whose cosine against TFLite falls below this is 'bad' (default 0.98)")
    p.add_argument("--no-fixes", action="store_true", help="explain only; try no fixes")
    p.add_argument("--no-float", action="store_true",
                   help="skip the float kmodel (CPU only) among the fixes: it is slow in the simulator")
    p.add_argument("--min-agreement", type=float, default=0.99, metavar="FRACTION",
                   help="exit 1 when the baseline's top-1 agreement is below this (default 0.99)")
    p.add_argument("--report", metavar="DIR",
                   help="write explain.json (the envelope) and layers.png there (default: no report folder)")
    p.add_argument("--keep", metavar="DIR",
                   help="keep every kmodel explain builds there, each with its model card (verify and hil take "
                        "them; default: none kept)")
    add_clamp_arg(p)
    p.add_argument("--no-transforms", action="store_true",
                   help="skip the graph transforms (equalisation, bias absorption, bias correction) among the fixes")
    p.add_argument("--workers", type=int, metavar="N",
                   help="nncase builds at once, each its own process (default: one per core); fixes that can no "
                        "longer beat the best are cut after --probe-images inputs unless --keep")
    p.add_argument("--holdout", type=float, metavar="FRACTION",
                   help="of your own --data, the share kept out of calibration for the checks (as compile; default "
                        "0.8)")
    add_json_arg(p, old_output=True)
    add_preprocess_args(p)
    add_io_node_args(p)
    p.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from k210.converters.preprocess import spec_for_model
    from k210.converters.quant_explain import CALIBRATE_METHODS, BuildSpec
    from k210.converters.sources import ModelFormat, detect
    from k210.converters.to_tflite import convert_to_tflite
    from k210.converters.transforms.clamp import parse_clamp
    from k210.core.errors import BadInputError

    from ..cliutil import progress_every
    from ..compiling import calibration_inputs
    from ..explaining import ExplainData, ExplainOptions, explain, plot, render
    from ..inputdata import DataRequest, load_inputs

    for name, value in (("--calib", args.calib), ("--limit", args.limit), ("--probe-images", args.probe_images)):
        if value < 1:
            raise BadInputError(f"{name} must be at least 1")
    if args.probes < 2:
        raise BadInputError("--probes must be at least 2")
    if args.more_calib is not None and args.more_calib < 1:
        raise BadInputError("--more-calib must be at least 1")
    if args.method not in CALIBRATE_METHODS:
        raise BadInputError(f"unknown calibration method '{args.method}' (choose from {', '.join(CALIBRATE_METHODS)})")
    for name, value in (("--min-cosine", args.min_cosine), ("--min-agreement", args.min_agreement)):
        if not 0 <= value <= 1:
            raise BadInputError(f"{name} must be between 0 and 1")
    if not args.dataset and not args.data:
        raise BadInputError("which data? pass --dataset NAME, --data DIR|FILE.npz or --dataset random")
    report_dir = Path(args.report) if args.report else None
    if report_dir is not None and report_dir.exists() and not report_dir.is_dir():
        raise BadInputError(f"--report {report_dir} exists and is not a directory")
    keep = Path(args.keep) if args.keep else None
    if keep is not None and keep.exists() and not keep.is_dir():
        raise BadInputError(f"--keep {keep} exists and is not a directory")
    if args.holdout is not None and not 0 <= args.holdout < 1:
        raise BadInputError("--holdout must be at least 0 and below 1 (the share of your data kept for checks)")

    source = detect(args.model)
    if source.format in (ModelFormat.KMODEL, ModelFormat.ONNX):
        raise BadInputError(f"explain needs the float model, not a {source.format.value} file: give "
                            ".keras/.h5/SavedModel/.pb/.tflite")
    tfl = convert_to_tflite(source, input_node=args.input_node, output_node=args.output_node)
    prep = spec_for_model(tfl.input_shape, dtype=args.input_type, overrides=overrides_from(args))
    shape = list(tfl.input_shape)

    def calibrate(count: int):  # as `k210 compile` draws them, so the printed compile line rebuilds the same
        return calibration_inputs(args.dataset, args.data, count, args.seed, prep, shape, holdout=args.holdout)

    calibration = calibrate(args.calib)
    more = extra = None
    more_count = args.more_calib or 4 * args.calib
    if more_count != len(calibration):
        try:
            extra = calibrate(more_count)
        except BadInputError:  # fewer samples than asked for: the fix is skipped, not the run
            extra = None
        if extra is not None and len(extra) != len(calibration):
            more = (extra.kmodel, extra.reference)
        else:
            extra = None
    # held-out checks: none of the samples any build calibrated on
    exclude = frozenset(calibration.hashes) | frozenset(extra.hashes if extra is not None else [])
    checks = load_inputs(DataRequest(args.dataset, args.data, args.seed, "test", args.limit, exclude=exclude), prep,
                         shape, purpose="check")

    spec = BuildSpec(calibrate_method=args.method, input_type=args.input_type, input_range=prep.input_range,
                     mean=_per_channel(prep.mean, prep.channels) if args.input_type == "uint8" else None,
                     std=_per_channel(prep.std, prep.channels) if args.input_type == "uint8" else None)
    if spec.mean is not None and not any(spec.mean) and all(v == 1.0 for v in spec.std or ()):
        spec = BuildSpec(calibrate_method=spec.calibrate_method, input_type=spec.input_type,
                         input_range=spec.input_range)
    data = ExplainData(calibration.kmodel, calibration.reference, checks.kmodel, checks.reference,
                       more_calibration=more, name=checks.name, calibration_hashes=list(calibration.hashes),
                       more_hashes=list(extra.hashes) if extra is not None else [])
    say = _progress_printer(progress_every())
    report = explain(tfl.data, shape, data, ExplainOptions(
        spec=spec, probes=args.probes, probe_images=args.probe_images, min_cosine=args.min_cosine,
        fixes=not args.no_fixes, try_float=not args.no_float, progress=say, transforms=not args.no_transforms,
        clamps=tuple(parse_clamp(c) for c in args.clamp_output),
        compile_base=compile_base(args), keep=keep, card_base=_card_base(args, source, prep, calibration),
        workers=args.workers))
    report.update({"model": str(source.path), "notes_model": tfl.notes, "min_agreement": args.min_agreement})
    passed = report["baseline"]["agreement"] >= args.min_agreement
    files = []
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        report["plot"] = str(plot(report, report_dir / "layers.png"))  # written atomically
        files.append(report_dir / "explain.json")
    return finish(args, report, text=lambda: render(report), passed=passed, inputs={"model": source.path},
                  files=files)


def compile_base(args: argparse.Namespace) -> list[str]:
    """The `k210 compile` arguments that name the same model, data and preprocessing as this explain."""
    words = [args.model]
    words += ["--dataset", args.dataset] if args.dataset else []
    words += ["--data", args.data] if args.data else []
    if args.seed:
        words += ["--seed", str(args.seed)]
    if args.holdout is not None:
        words += ["--holdout", f"{args.holdout:g}"]
    for flag, value in (("--input-node", args.input_node), ("--output-node", args.output_node),
                        ("--color", args.color), ("--resize", args.resize)):
        if value:
            words += [flag, value]
    if getattr(args, "input_range", None) is not None:
        words += ["--input-range", ",".join(f"{v:g}" for v in args.input_range)]
    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        if values is not None:
            words += [flag, ",".join(f"{v:g}" for v in values)]
    if args.pad_value is not None:
        words += ["--pad-value", str(args.pad_value)]
    if args.force_preprocessing:
        words.append("--force-preprocessing")
    return words


def _card_base(args: argparse.Namespace, source, prep, calibration) -> dict:
    """What every build explain keeps shares in its card: the source model, preprocessing, calibration data."""
    from pathlib import Path

    from k210.core.fsutil import sha256_file

    from ..compiling import _hashable_file
    from ..heldout import DEFAULT_HOLDOUT
    from ..sidecars import read_meta

    meta = read_meta(source.path) or {}
    return {
        "source": {"path": str(source.path.resolve()), "format": source.format.value,
                   "sha256": sha256_file(_hashable_file(source.path))},
        "preprocessing": {"spec": prep.to_dict(), "summary": prep.describe(), "input_type": args.input_type,
                          "input_range": list(prep.input_range),
                          "board_sends": "raw uint8 pixels (nncase maps 0..255 onto input_range)"
                          if args.input_type == "uint8" else "float32 tensors, already normalised"},
        "labels": meta.get("labels"),
        "calibration": {"dataset": args.dataset, "data": str(Path(args.data).resolve()) if args.data else None,
                        "source": calibration.source, "seed": args.seed,
                        "holdout": None if args.dataset else (DEFAULT_HOLDOUT if args.holdout is None
                                                              else args.holdout)},
    }


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    return tuple(values) * channels if len(values) == 1 else tuple(values)


def _progress_printer(every: float):
    import sys
    import time

    started = time.monotonic()

    def say(message: str) -> None:
        print(f"explain: {message} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)

    return say
