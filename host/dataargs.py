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


def add_preprocess_args(parser: argparse.ArgumentParser, *, with_range: bool = True) -> None:
    group = parser.add_argument_group("preprocessing (default: the model card's, else pixels / 255)")
    if with_range:
        group.add_argument("--input-range", type=parse_range, metavar="LOW,HIGH",
                           help="float range pixels 0..255 map onto (default 0,1 = pixels / 255; a negative "
                                "low needs '=': --input-range=-1,1)")
    group.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="subtracted after the input range, per channel")
    group.add_argument("--std", type=_floats, metavar="S[,S,S]", help="divided by after the mean, per channel")
    group.add_argument("--color", choices=("rgb", "grayscale"), help="must match the model's input channels")
    group.add_argument("--resize", choices=("bilinear", "nearest", "none"),
                       help="how images are brought to the model's size (default bilinear; none: refuse others)")


def add_save_io_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--save-io", metavar="FILE.npz",
                        help="keep the inputs and every output (reference, kmodel/simulator, board) in FILE.npz")


def overrides_from(args: argparse.Namespace):
    from k210.converters.preprocess import Overrides

    return Overrides(input_range=getattr(args, "input_range", None), mean=getattr(args, "mean", None),
                     std=getattr(args, "std", None), color=getattr(args, "color", None),
                     resize=getattr(args, "resize", None))
