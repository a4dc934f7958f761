"""`k210 train NAME`: train a seed model from the zoo."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import add_dataset_args, add_json_arg, finish, load_dataset_arg
from ..vocabulary import add_deprecated

EPILOG = """examples:
  k210 train xo                              # the X/O MLP on procedural glyphs, into out/models
  k210 train xo --epochs 1 --limit 300 -o out/quick --json"""


def add_parser(sub) -> None:
    from k210.models.zoo import ALIASES, ZOO

    names = ", ".join(ZOO)
    aliases = ", ".join(f"{alias} = {name}" for alias, name in ALIASES.items())
    p = sub.add_parser("train", help=f"train a zoo model ({names})",
                       description=f"Train a seed model of the zoo. Models: {names} (aliases: {aliases}). Writes "
                                   "the .keras model, its .meta.json (labels, preprocessing), the history and the "
                                   "training curves into the output directory.",
                       epilog=EPILOG)
    p.add_argument("model", metavar="NAME", help=f"zoo model: {names}; or an alias ({aliases})")
    add_dataset_args(p, default_text="the recipe's")
    out = p.add_argument("-o", "--output", default="out/models", metavar="DIR",
                         help="where the model and its files go (default out/models)")
    add_deprecated(p, ("--out",), out)
    p.add_argument("--epochs", type=int, metavar="N", help="override the recipe's epochs (default: the recipe's)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="train on the first N training images only (default: all of them)")
    add_json_arg(p)
    p.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from k210.core.errors import BadInputError
    from k210.models.zoo import get_model_def

    from ..training import train

    model_def = get_model_def(args.model)
    if args.epochs is not None and args.epochs < 1:
        raise BadInputError("--epochs must be at least 1")
    dataset = load_dataset_arg(args, args.dataset or model_def.dataset)
    result = train(model_def, dataset, Path(args.output), epochs=args.epochs, seed=args.seed, limit=args.limit)
    summary = {
        "model": str(result.model_path),
        "history": str(result.history_path),
        "curves": str(result.curves_path),
        "meta": str(result.meta_path),
        "dataset": dataset.name,
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
    }
    lines = [f"trained {model_def.name} on {dataset.name}: test accuracy {result.test_accuracy:.4f} "
             f"({len(dataset.x_test)} images)"]
    lines += [f"  {key:8s} {summary[key]}" for key in ("model", "history", "curves", "meta")]
    return finish(args, summary, text="\n".join(lines))
