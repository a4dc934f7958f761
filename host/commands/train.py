"""`k210 train NAME`: train a seed model from the zoo."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import add_dataset_args, add_json_arg, finish, load_dataset_arg


def add_parser(sub) -> None:
    from k210.models.zoo import ALIASES, ZOO

    names = ", ".join(ZOO)
    aliases = ", ".join(f"{alias} = {name}" for alias, name in ALIASES.items())
    p = sub.add_parser("train", help=f"train a zoo model ({names})",
                       description=f"Train a seed model of the zoo. Models: {names} (aliases: {aliases}).")
    p.add_argument("model", metavar="NAME", help=f"zoo model: {names}; or an alias ({aliases})")
    add_dataset_args(p)
    p.add_argument("--out", default="out/models", help="output directory (default out/models)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--limit", type=int, help="train on the first N training images only")
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
    result = train(model_def, dataset, Path(args.out), epochs=args.epochs, seed=args.seed, limit=args.limit)
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
