"""Every output and decoded task of one comparison, judged: the piece verify and hil share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from k210.host.metrics import compare, confusion

from .judge import judge_output
from .rules import TASK, OutputRule, Tolerance, parse_output_kinds, parse_outputs, parse_tolerances, resolve_rules
from .tasks import judge_task, load_postprocess, task_outputs


@dataclass(frozen=True)
class RuleFlags:
    """What the command line says about the pass rules (None/empty: the card's, else the defaults)."""

    output_kinds: list[str] = field(default_factory=list)  # --output-kind 1=values
    tolerances: list[str] = field(default_factory=list)  # --tolerance 1:max_abs=2.0,nse=0.99
    outputs: str | None = None  # --outputs 0,2: check only these
    postprocess: str | None = None  # --postprocess PRESET|FILE|JSON
    min_agreement: float = 0.99
    min_cosine: float = 0.99


@dataclass
class RuleSet:
    rules: list[OutputRule]
    postprocess: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"outputs": [{"output": r.output, **r.to_dict()} for r in self.rules],
                "postprocess": self.postprocess}


def rule_set(flags: RuleFlags, card: dict, expected: list[np.ndarray], class_names: list[str] | None) -> RuleSet:
    """One rule per output from the flags, the card and the expected outputs (TF's, else the simulator's)."""
    postprocess = load_postprocess(flags.postprocess) if flags.postprocess else None
    if postprocess is None and card.get("postprocess"):
        from .tasks import check_postprocess

        postprocess = check_postprocess(card["postprocess"])
    count = len(expected)
    tolerances: dict[int | None, Tolerance] = parse_tolerances(flags.tolerances)
    rules = resolve_rules(count, sizes=[int(np.prod(e.shape[1:])) for e in expected], references=list(expected),
                          classes=len(class_names) if class_names else None, card=card,
                          flag_kinds=parse_output_kinds(flags.output_kinds), flag_tolerances=tolerances,
                          chosen=parse_outputs(flags.outputs, count), task_outputs=task_outputs(postprocess),
                          min_agreement=flags.min_agreement, min_cosine=flags.min_cosine)
    return RuleSet(rules, postprocess)


@dataclass
class Judgement:
    outputs: list[dict[str, Any]]
    tasks: list[dict[str, Any]]

    @property
    def passed(self) -> bool:
        return all(o["passed"] for o in self.outputs) and all(t["passed"] for t in self.tasks)

    def reasons(self) -> list[str]:
        lines = [f"output {o['output']}: {r}" for o in self.outputs for r in o.get("reasons", [])]
        lines += [f"{t['task']} (outputs {', '.join(map(str, t['outputs']))}): {r}"
                  for t in self.tasks for r in t["reasons"]]
        return lines


def judge_all(reference: list[np.ndarray], candidate: list[np.ndarray], rules: RuleSet, *,
              shapes: list[list[int]], labels: np.ndarray | None = None,
              class_names: list[str] | None = None) -> Judgement:
    """Each output under its rule (skipped ones reported, not judged), then the decoded task if any."""
    outputs = []
    classes = len(class_names) if class_names else None
    for rule, ref, cand in zip(rules.rules, reference, candidate):
        head = {"output": rule.output, "shape": list(shapes[rule.output]), **rule.to_dict()}
        if rule.kind == TASK or not rule.checked:
            figures = compare(ref, cand, class_scores=False)
            note = "judged by the decoded task" if rule.kind == TASK else "not checked (--outputs)"
            outputs.append({**head, **figures, "passed": True, "reasons": [], "note": note})
            continue
        with_labels = labels if rule.kind == "scores" and classes is not None and \
            int(np.prod(ref.shape[1:])) == classes else None
        row = {**head, **judge_output(ref, cand, rule, with_labels)}
        if with_labels is not None and classes:
            row["confusion"] = {
                "reference": confusion(with_labels, ref.reshape(len(ref), -1).argmax(1), classes),
                "kmodel": confusion(with_labels, cand.reshape(len(cand), -1).argmax(1), classes),
            }
        outputs.append(row)
    tasks = [judge_task(rules.postprocess, reference, candidate, shapes)] if rules.postprocess else []
    return Judgement(outputs, tasks)
