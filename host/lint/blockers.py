"""A lint report's problems grouped and ordered by what blocks: ops nncase cannot build first, then
other whole-model problems, then memory, then CPU fallbacks. Identical problems (the same op with
the same reason, as on every sparse weight of a model) become one group: a count and the first names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from k210.converters.kpu_rules import Placement

from .report import LintReport

SHOWN_NAMES = 3
_FALLBACK = re.compile(r"^(?P<name>.*?) \((?P<what>[^()]*(?:\([^()]*\)[^()]*)*)\)$")


@dataclass
class Group:
    kind: str  # "unsupported" | "model" | "memory" | "fallback"
    what: str  # the op, or "" for a whole-model problem
    reason: str
    fix: str | None = None
    names: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return max(len(self.names), 1)

    def line(self, names: int = SHOWN_NAMES, fix: bool = True) -> str:
        if not self.what:
            return self.reason
        shown = ", ".join(self.names[:names]) + (", ..." if len(self.names) > names else "")
        ops = f"{self.count} {self.what} op{'s' if self.count != 1 else ''}"
        text = f"{ops} ({shown}): {self.reason}"
        return text + (f"; fix: {self.fix}" if self.fix and fix else "")


def problem_groups(report: LintReport) -> list[Group]:
    """Every problem once, grouped, in blocking order (the CPU fallbacks come last, see fallback_groups)."""
    unsupported: dict[tuple, Group] = {}
    from_ops: set[str] = set()
    for op in report.ops:
        if op.placement is not Placement.UNSUPPORTED:
            continue
        from_ops.add(f"{op.name} ({op.op}): {op.reason}")
        key = (op.op, op.reason, op.fix)
        unsupported.setdefault(key, Group("unsupported", op.op, op.reason, op.fix)).names.append(op.name)
    memory = [Group("memory", "", p) for p in report.problems if p in report.estimate_problems]
    model = [Group("model", "", p) for p in report.problems if p not in from_ops and p not in report.estimate_problems]
    return [*unsupported.values(), *model, *memory]


def fallback_groups(report: LintReport) -> list[Group]:
    """report.fallbacks ("name (OP: why)") grouped by what and why."""
    groups: dict[str, Group] = {}
    for item in report.fallbacks:
        match = _FALLBACK.match(item)
        name, what = (match["name"], match["what"]) if match else (item, "")
        op, _, why = what.partition(": ")
        groups.setdefault(what, Group("fallback", op, why or "stays on the CPU")).names.append(name)
    return list(groups.values())
