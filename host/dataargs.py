"""Command-line options for the preprocessing spec, shared by compile, verify and hil.

The flags only override: without them the model card's spec (or the model's defaults) applies.
"""

from __future__ import annotations

import argparse

from .cliutil import parse_range


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected one number or one per channel, such as 127.5 or "
                                         f"0.485,0.456,0.406 (got '{text}')") from None
    return values


_floats.negative_ok = True  # type: ignore[attr-defined]  # `--mean -0.5,0,0.5` is a value (host/vocabulary.py)


def add_preprocess_args(parser: argparse.ArgumentParser, *, with_range: bool = True) -> None:
    group = parser.add_argument_group("preprocessing (default: the model card's, else pixels / 255)")
    if with_range:
        group.add_argument("--input-range", type=parse_range, metavar="LOW,HIGH",
                           help="float range pixels 0..255 map onto, e.g. --input-range -1,1 (default: the "
                                "card's, else 0,1 = pixels / 255)")
    group.add_argument("--mean", type=_floats, metavar="N[,N,N]",
                       help="subtracted after the input range, per channel (default: the card's, else 0)")
    group.add_argument("--std", type=_floats, metavar="N[,N,N]",
                       help="divided by after the mean, per channel (default: the card's, else 1)")
    group.add_argument("--color", choices=("rgb", "grayscale"),
                       help="must match the model's input channels (default: the card's, else what the model "
                            "takes)")
    group.add_argument("--resize", choices=("bilinear", "nearest", "letterbox", "none"),
                       help="how images are brought to the model's size (default bilinear; letterbox: keep the "
                            "aspect ratio and pad with --pad-value; none: refuse other sizes)")
    group.add_argument("--pad-value", type=int, metavar="N",
                       help="the pixel value 0..255 letterbox pads with (default 0)")
    group.add_argument("--force-preprocessing", action="store_true",
                       help="use these flags even where the model's own metadata says otherwise")


def add_save_io_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--save-io", metavar="FILE.npz",
                        help="keep the inputs and every output (reference, kmodel/simulator, board) in FILE.npz "
                             "(default: not kept)")


def overrides_from(args: argparse.Namespace):
    from k210.converters.preprocess import Overrides

    return Overrides(input_range=getattr(args, "input_range", None), mean=getattr(args, "mean", None),
                     std=getattr(args, "std", None), color=getattr(args, "color", None),
                     resize=getattr(args, "resize", None), pad=getattr(args, "pad_value", None),
                     force=bool(getattr(args, "force_preprocessing", False)))


def add_rule_args(parser: argparse.ArgumentParser) -> None:
    """The pass rules (docs/pass-rules.md), shared by verify and hil."""
    group = parser.add_argument_group("pass rules (default: the model card's, else guessed per output)")
    group.add_argument("--output-kind", action="append", default=[], metavar="OUTPUT=KIND",
                       help="judge output OUTPUT as scores (top-1 agreement) or values (max abs error, NSE, cosine "
                            "in its own units), e.g. --output-kind 1=values (repeatable; default: the card's, "
                            "else guessed from the output's shape)")
    group.add_argument("--tolerance", action="append", default=[], metavar="[OUTPUT:]KEY=N,...",
                       help="limits for one output (or all): agreement, max_abs, steps, nse, cosine, e.g. "
                            "--tolerance 1:max_abs=2.0,nse=0.99 (repeatable; default values: steps=8, nse=0.99, "
                            "cosine=0.99)")
    group.add_argument("--outputs", metavar="N[,N]",
                       help="check only these outputs, the others reported as not checked (default: all)")
    group.add_argument("--postprocess", metavar="PRESET|FILE.json|JSON",
                       help="judge a detector by decoded boxes or a segmenter by its mask (presets: "
                            "mediapipe-face-front, axelerate-yolo2, mask); default: the model card's")
    group.add_argument("--on-calibration-data", action="store_true",
                       help="also check on the samples the kmodel was calibrated on (left out by default)")


def rule_flags_from(args: argparse.Namespace):
    """RuleFlags from the command line, checked now (a typo fails before any model runs)."""
    from k210.host.judge.rules import parse_output_kinds, parse_tolerances
    from k210.host.judge.tasks import load_postprocess
    from k210.host.judge.verdict import RuleFlags

    parse_output_kinds(args.output_kind)
    parse_tolerances(args.tolerance)
    load_postprocess(args.postprocess)
    return RuleFlags(output_kinds=list(args.output_kind), tolerances=list(args.tolerance), outputs=args.outputs,
                     postprocess=args.postprocess, min_agreement=args.min_agreement, min_cosine=args.min_cosine)
