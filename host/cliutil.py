"""Bits every subcommand shares: dataset arguments, progress bars, output paths, tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import BadInputError


def add_dataset_args(parser: argparse.ArgumentParser, *, required: bool = False, default: str | None = None) -> None:
    parser.add_argument(
        "--dataset", required=required, default=default, metavar="NAME",
        help="xo (procedural, offline), xo-emnist, xo-course, fashion-mnist, mnist",
    )
    parser.add_argument("--data", metavar="PATH", help="where the dataset's files are (if not the default place)")
    parser.add_argument("--seed", type=int, default=0, help="seed for generated data and sampling (default 0)")


def add_io_node_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-node", help="input node of a frozen .pb (found when unambiguous)")
    parser.add_argument("--output-node", help="output node of a frozen .pb (found when unambiguous)")


def load_dataset_arg(args: argparse.Namespace, name: str | None = None):
    from k210.models.datasets import load_dataset

    return load_dataset(name or args.dataset, path=getattr(args, "data", None), seed=getattr(args, "seed", 0))


def progress(total: int, desc: str, unit: str = "img"):
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (CI logs, pipes).
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False)


def output_path(given: str | None, default: Path, suffix: str) -> Path:
    path = Path(given) if given else default
    if given and path.suffix.lower() != suffix:
        raise BadInputError(f"output {path} should end in {suffix}")
    return path


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH such as 0,1 (got '{text}')") from None
    return lo, hi


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([line, rule, *body])


def print_json(obj: object) -> None:
    from .fsutil import _json_default

    print(json.dumps(obj, indent=2, default=_json_default))
