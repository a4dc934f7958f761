"""Each output's kind and tolerance: guessed from the model, set in the card or on the command line.

Kinds:
  scores  class scores (a softmax head, or as many values as the card has labels): top-1 agreement;
  values  regression, landmarks, boxes, embeddings, masks as numbers: max abs error and NSE in the
          output's own units, and mean cosine;
  task    consumed by a decoded task (the card's `postprocess`: a detector or a mask), judged there.

Default tolerances, and why:
  scores  top-1 agreement >= 0.99: one input in a hundred may flip between two close classes;
  values  max abs error <= 8 output steps, where a step is the reference's measured range over the
          check data / 255 (one uint8 step of that output: the KPU's own resolution, and 8 of them
          is about 3 % of the range), NSE >= 0.99 (the error's variance <= 1 % of the output's
          own variance across inputs), and mean cosine >= 0.99.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from k210.core.errors import BadInputError

KINDS = ("scores", "values")
TASK = "task"
STEPS_DEFAULT = 8.0


@dataclass(frozen=True)
class Tolerance:
    min_agreement: float | None = None  # scores: top-1 agreement
    max_abs: float | None = None  # values: in the output's units (overrides max_steps)
    max_steps: float | None = None  # values: in steps of the reference's range / 255
    min_nse: float | None = None  # values
    min_cosine: float | None = None  # values

    def merged(self, other: Tolerance) -> Tolerance:
        """`other`'s values where it sets them, else these."""
        return replace(self, **{k: v for k, v in asdict(other).items() if v is not None})

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def default_tolerance(kind: str, min_agreement: float = 0.99, min_cosine: float = 0.99) -> Tolerance:
    if kind == "scores":
        return Tolerance(min_agreement=min_agreement)
    return Tolerance(max_steps=STEPS_DEFAULT, min_nse=0.99, min_cosine=min_cosine)


@dataclass(frozen=True)
class OutputRule:
    output: int
    kind: str  # "scores" | "values" | "task"
    kind_from: str  # "guessed (softmax rows)", "card", "--output-kind", ...
    tolerance: Tolerance
    checked: bool = True  # False: the user left it out (--outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "kind_from": self.kind_from, "tolerance": self.tolerance.to_dict(),
                "checked": self.checked}


# --- command-line and card specs --------------------------------------------------------------------

_TOLERANCE_KEYS = {"agreement": "min_agreement", "max_abs": "max_abs", "steps": "max_steps", "nse": "min_nse",
                   "cosine": "min_cosine"}


def parse_output_kinds(items: list[str] | None) -> dict[int, str]:
    """`--output-kind 1=values` (repeatable) -> {1: "values"}."""
    kinds: dict[int, str] = {}
    for item in items or []:
        index, sep, kind = item.partition("=")
        if not sep or kind not in KINDS:
            raise BadInputError(f"--output-kind {item}: expected OUTPUT=KIND with KIND one of {', '.join(KINDS)} "
                                "(e.g. --output-kind 1=values)")
        kinds[_index(index, "--output-kind", item)] = kind
    return kinds


def parse_tolerances(items: list[str] | None) -> dict[int | None, Tolerance]:
    """`--tolerance 1:max_abs=2.0,nse=0.99` (repeatable; no `OUTPUT:` = every output) -> {1: Tolerance}."""
    result: dict[int | None, Tolerance] = {}
    for item in items or []:
        head, sep, body = item.partition(":")
        index: int | None = None
        if sep and "=" not in head:
            index = _index(head, "--tolerance", item)
        else:
            body = item
        values: dict[str, float] = {}
        for part in filter(None, body.split(",")):
            key, eq, text = part.partition("=")
            if not eq or key.strip() not in _TOLERANCE_KEYS:
                raise BadInputError(f"--tolerance {item}: '{part}' is not KEY=NUMBER with KEY one of "
                                    f"{', '.join(_TOLERANCE_KEYS)} (e.g. --tolerance 1:max_abs=2.0,nse=0.99)")
            values[_TOLERANCE_KEYS[key.strip()]] = _number(text, f"--tolerance {item}")
        if not values:
            raise BadInputError(f"--tolerance {item}: no KEY=NUMBER given")
        result[index] = result.get(index, Tolerance()).merged(Tolerance(**values))
    return result


def parse_outputs(text: str | None, count: int) -> set[int] | None:
    """`--outputs 0,2` -> {0, 2}: the outputs to check (None: all)."""
    if text is None:
        return None
    chosen = {_index(part, "--outputs", text) for part in text.split(",") if part.strip()}
    if not chosen:
        raise BadInputError("--outputs: name at least one output (e.g. --outputs 0)")
    beyond = sorted(i for i in chosen if i >= count)
    if beyond:
        raise BadInputError(f"--outputs {text}: the model has {count} output(s) (0..{count - 1}), not {beyond[0]}")
    return chosen


def _index(text: str, flag: str, item: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise BadInputError(f"{flag} {item}: '{text}' is not an output index (0, 1, ...)") from None
    if value < 0:
        raise BadInputError(f"{flag} {item}: output indices start at 0")
    return value


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInputError(f"{what}: '{text}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise BadInputError(f"{what}: {text} must be a finite number >= 0")
    return value


def card_rules(card: dict) -> tuple[dict[int, str], dict[int | None, Tolerance]]:
    """Kinds and tolerances the model card sets: `outputs[i].kind` and `outputs[i].tolerance` {key: number}."""
    kinds: dict[int, str] = {}
    tolerances: dict[int | None, Tolerance] = {}
    for i, entry in enumerate(card.get("outputs") or []):
        if not isinstance(entry, dict):
            continue
        kind = entry.get("kind")
        if kind is not None:
            if kind not in KINDS:
                raise BadInputError(f"the model card's output {i} kind '{kind}' is not one of {', '.join(KINDS)}")
            kinds[i] = kind
        tol = entry.get("tolerance")
        if isinstance(tol, dict) and tol:
            text = ",".join(f"{k}={v}" for k, v in tol.items())
            tolerances.update({i: parse_tolerances([f"{i}:{text}"])[i]})
    return kinds, tolerances


# --- guessing ----------------------------------------------------------------------------------------


def guess_kind(reference: np.ndarray | None, classes: int | None, per_image_values: int,
               head: str | None = None) -> tuple[str, str]:
    """(kind, why) from what the model gives: a softmax/sigmoid head (the card's, from the TFLite graph),
    softmax-like rows, or as many values as labels -> scores."""
    if per_image_values >= 2 and head in ("softmax", "sigmoid"):  # a vector's head: a map's (a mask) is values
        return "scores", f"guessed: a {head} head"
    if per_image_values >= 2 and classes is not None and per_image_values == classes:
        return "scores", f"guessed: {classes} values, as many as the card's labels"
    if reference is not None and len(reference) and per_image_values >= 2:
        rows = np.asarray(reference, np.float64).reshape(len(reference), -1)
        if (rows >= -1e-6).all() and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
            return "scores", "guessed: every row is a probability vector (a softmax head)"
    return "values", "guessed: not class scores"


def _head(card: dict, index: int) -> str | None:
    """The card's softmax/sigmoid head of output `index`, when that output is one vector (not a map)."""
    outputs = card.get("outputs") or []
    entry = outputs[index] if index < len(outputs) and isinstance(outputs[index], dict) else {}
    shape = entry.get("shape") or []
    vector = len([d for d in shape[1:] if d != 1]) == 1
    return entry.get("head") if vector else None


def resolve_rules(count: int, *, sizes: list[int], references: list[np.ndarray | None], classes: int | None,
                  card: dict, flag_kinds: dict[int, str], flag_tolerances: dict[int | None, Tolerance],
                  chosen: set[int] | None, task_outputs: set[int], min_agreement: float = 0.99,
                  min_cosine: float = 0.99) -> list[OutputRule]:
    """One rule per output: the flag's kind, else the card's, else the guess; tolerance likewise."""
    card_kinds, card_tolerances = card_rules(card)
    beyond = sorted(i for i in list(flag_kinds) + [k for k in flag_tolerances if k is not None] if i >= count)
    if beyond:
        raise BadInputError(f"the model has {count} output(s) (0..{count - 1}): no output {beyond[0]}")
    rules = []
    for i in range(count):
        if i in task_outputs:
            kind, why = TASK, "the card's postprocess decodes it"
        elif i in flag_kinds:
            kind, why = flag_kinds[i], "--output-kind"
        elif i in card_kinds:
            kind, why = card_kinds[i], "model card"
        else:
            kind, why = guess_kind(references[i], classes, sizes[i], _head(card, i))
        tolerance = default_tolerance(kind if kind != TASK else "values", min_agreement, min_cosine)
        for layer in (card_tolerances.get(None), card_tolerances.get(i), flag_tolerances.get(None),
                      flag_tolerances.get(i)):
            if layer is not None:
                tolerance = tolerance.merged(layer)
        rules.append(OutputRule(i, kind, why, tolerance, checked=chosen is None or i in chosen))
    return rules
