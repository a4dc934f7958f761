"""Bits every subcommand shares: dataset arguments, the JSON envelope, progress, output paths, tables."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from k210.core import firmwares
from k210.core.errors import EXIT_CHECK_FAILED, EXIT_OK, BadInputError
from k210.core.progress import PlainProgress, progress, progress_every  # noqa: F401  (commands use them from here)
from k210.core.textfmt import TABLE_WIDTH, fit_width, format_table  # noqa: F401

FIRMWARES = firmwares.KEYS  # what runs on the board (k210.core.firmwares): one option name, --firmware, everywhere


def add_dataset_args(parser: argparse.ArgumentParser, *, required: bool = False, default: str | None = None,
                     default_text: str = "the one the model was trained on (its model card or .meta.json)") -> None:
    parser.add_argument(
        "--dataset", required=required, default=default, metavar="NAME",
        help="xo (procedural, offline), xo-emnist, xo-course, fashion-mnist, mnist, shapes, random (seeded "
             "uniform inputs, no labels; compile/verify/hil)"
             + f"; default: {default or default_text}",
    )
    parser.add_argument("--data", metavar="PATH",
                        help="a named set's files (default: where the set keeps them); without --dataset your "
                             "own data: an image folder (class subfolders = labels) or .npz/.npy arrays x (and y)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed for generated data and sampling (default 0)")


def add_io_node_args(parser: argparse.ArgumentParser, *, input_default: str | None = None,
                     output_default: str | None = None,
                     what: str = "of a frozen .pb (default: found when unambiguous)") -> None:
    parser.add_argument("--input-node", default=input_default, metavar="NAME", help=f"input node {what}")
    parser.add_argument("--output-node", default=output_default, metavar="NAME", help=f"output node {what}")


def add_json_arg(parser: argparse.ArgumentParser, *, old_output: bool = False) -> None:
    """--json (the envelope on stdout) and --json-out FILE.json (the same envelope in a file), on every command.
    old_output: -o/--output FILE.json, the JSON copy's old name where -o made no artefact (one release)."""
    from .vocabulary import add_deprecated, json_file

    parser.add_argument("--json", action="store_true",
                        help="print one JSON envelope on stdout instead of text (schema: host/envelope.schema.json)")
    json_out = parser.add_argument("--json-out", type=json_file, metavar="FILE.json",
                                   help="also write that envelope to FILE.json when the command runs to its end, "
                                        "exit 0 or 1 (default: none; bad input writes nothing)")
    if old_output:
        add_deprecated(parser, ("-o", "--output"), json_out)


def add_firmware_arg(parser: argparse.ArgumentParser, choices: Sequence[str] = FIRMWARES, *,
                     what: str = "the firmware on the board", old: Sequence[str] = ()) -> None:
    """--firmware KIND, its choices and help from the registry; unset, it follows the kmodel (v5: canmv,
    v3/v4: maixpy). `old`: hidden deprecated names."""
    parser.add_argument("--firmware", choices=tuple(choices), default=None, metavar="{" + ",".join(choices) + "}",
                        help=f"{what}: {firmwares.choices_help(tuple(choices))}; default: what the kmodel's "
                             "version and model card call for")
    if old:
        from .vocabulary import add_deprecated

        add_deprecated(parser, old, next(a for a in parser._actions if "--firmware" in a.option_strings))


def firmware_for(given: str | None, *, kmodel_version: int | None = None, card: Mapping[str, Any] | None = None,
                 choices: Sequence[str] = FIRMWARES) -> str:
    """The firmware to target: the one given, else the model card's, else the one that loads the kmodel."""
    if given:
        return given
    card = card or {}
    carded = card.get("firmware")  # a card may name its firmware
    if isinstance(carded, str) and carded in choices:
        return carded
    kmodel = card.get("kmodel") if isinstance(card.get("kmodel"), dict) else {}
    version = kmodel_version if kmodel_version is not None else kmodel.get("version")
    preferred = firmwares.default_for(version)
    # The card's `loaded_by` (loader keys: sdk is our c runner) rules out what cannot load it.
    by_loader = firmwares.BY_LOADER_KEY
    loaders = [by_loader[key].key for key in kmodel.get("loaded_by") or [] if key in by_loader]
    if loaders and preferred not in loaders:
        preferred = next((f for f in loaders if f in choices), preferred)
    return preferred if preferred in choices else choices[0]


def firmware_of_kmodel(path: str | os.PathLike[str] | None, given: str | None = None,
                       choices: Sequence[str] = FIRMWARES) -> str:
    """--firmware as given, else what the kmodel file's version (and model card) calls for."""
    if given:
        return given
    from .sidecars import read_card

    if path is None or not Path(path).is_file():
        return firmware_for(None, choices=choices)  # the command says what is wrong with a missing file
    with open(path, "rb") as f:
        head = f.read(8)
    version = int.from_bytes(head[4:8], "little") if head[:4] == b"LDMK" and len(head) == 8 else None
    if version is None and len(head) >= 4 and int.from_bytes(head[:4], "little") == 3:
        version = 3  # kmodel v3 starts with its version, not a magic
    try:
        card = read_card(Path(path))
    except BadInputError:
        card = None
    return firmware_for(None, kmodel_version=version, card=card, choices=choices)


def load_dataset_arg(args: argparse.Namespace, name: str | None = None):
    from k210.models.datasets import load_dataset

    return load_dataset(name or args.dataset, path=getattr(args, "data", None), seed=getattr(args, "seed", 0))


def finish(args: argparse.Namespace, result: Mapping[str, Any], *, text: str | Callable[[], str] | None = None,
           passed: bool = True, inputs: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
           files: Iterable[str | os.PathLike[str] | None] = (), failure: str | None = None,
           exit_code: int | None = None) -> int:
    """The end of every command: the envelope to stdout (--json) or the text, the envelope to `files`.

    Returns the exit code: 0, or 1 when `passed` is false (a check failed; `failure` says which, on stderr);
    `exit_code` instead where the command ran to its end and still failed otherwise (e.g. a board was lost)."""
    from k210.core.fsutil import write_text_atomic

    from .envelope import build_envelope, to_json

    code = exit_code if exit_code is not None else EXIT_OK if passed else EXIT_CHECK_FAILED
    envelope = build_envelope(args.command, dict(result), exit_code=code, inputs=inputs)
    for path in dict.fromkeys([*files, getattr(args, "json_out", None)]):  # --json-out on every command
        if path is not None:
            write_text_atomic(path, to_json(envelope) + "\n")
    if getattr(args, "json", False):
        print(to_json(envelope), flush=True)
    elif text is not None:
        print(text() if callable(text) else text, flush=True)
    if not passed and failure:
        print(f"k210 {args.command}: check failed: {failure}", file=sys.stderr, flush=True)
    args.emitted = True
    return code


def json_output_path(given: str | None) -> Path | None:
    if given is None:
        return None
    path = Path(given)
    if path.suffix.lower() != ".json":
        raise BadInputError(f"output {path} should end in .json")
    return path


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


parse_range.negative_ok = True  # type: ignore[attr-defined]  # `--input-range -1,1` is a value (host/vocabulary.py)


def print_json(obj: object) -> None:
    from .envelope import to_json

    print(to_json(obj))  # type: ignore[arg-type]
