"""The lint report: one format for every input (TFLite, Keras, frozen graph, ONNX, kmodel)."""

from __future__ import annotations

from dataclasses import dataclass, field

from k210.converters.kpu_rules import OpPlacement, Placement
from k210.core.errors import EXIT_CHECK_FAILED, EXIT_OK


@dataclass
class Finding:
    """A Keras layer or a TF graph node, checked before conversion."""

    name: str
    kind: str  # layer class or TF op type
    verdict: str  # kpu, kpu-partial, cpu, removed, folded, unsupported, unchecked
    reason: str
    fix: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.kind, "verdict": self.verdict, "reason": self.reason,
                "fix": self.fix}


@dataclass
class LintReport:
    source: str
    format: str
    compiler: str  # "nncase1.9" | "nncase0.2" (for a kmodel: the compiler that made it)
    quant: str  # "uint8" | "float" (for a kmodel: what its modules show)
    ops: list[OpPlacement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    firmware: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    findings_title: str = ""  # "Keras layers" or "TF graph nodes"
    fallbacks: list[str] = field(default_factory=list)  # work that could run on the KPU but will not
    kmodel: dict | None = None
    estimate_problems: list[str] = field(default_factory=list)  # the problems that are memory estimates
    confirmation: dict | None = None  # nncase's own figures, from `k210 lint --confirm` (host/lint/confirm.py)

    @property
    def only_estimates(self) -> bool:
        """Every problem is a memory estimate: nncase's real result should decide (k210 compile does)."""
        return bool(self.problems) and all(p in self.estimate_problems for p in self.problems)

    @property
    def ok(self) -> bool:
        """The model can be compiled and fits; CPU fallbacks do not count (see passes)."""
        return not self.problems

    def passes(self, strict: bool = False) -> bool:
        return self.ok and not (strict and self.fallbacks)

    def exit_code(self, strict: bool = False) -> int:
        return EXIT_OK if self.passes(strict) else EXIT_CHECK_FAILED

    def placement_counts(self) -> dict[str, int]:
        counts = {p.value: 0 for p in Placement}
        for op in self.ops:
            counts[op.placement.value] += 1
        return counts

    def to_dict(self) -> dict:
        data = {
            "ok": self.ok,
            "source": self.source,
            "format": self.format,
            "compiler": self.compiler,
            "quant": self.quant,
            "ops": [
                {"name": op.name, "op": op.op, "placement": op.placement.value, "reason": op.reason, "fix": op.fix}
                for op in self.ops
            ],
            "problems": list(self.problems),
            "notes": list(self.notes),
            "cpu_fallbacks": list(self.fallbacks),
            "memory": dict(self.memory),
            "firmware": list(self.firmware),
        }
        if self.findings:
            data["findings"] = {"title": self.findings_title, "items": [f.to_dict() for f in self.findings]}
        if self.kmodel is not None:
            data["kmodel"] = self.kmodel
        data["estimate_problems"] = list(self.estimate_problems)
        if self.confirmation is not None:
            data["confirmation"] = self.confirmation
        return data
