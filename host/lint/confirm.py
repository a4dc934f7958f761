"""Lint's estimate against nncase's own result: `k210 lint --confirm` and `k210 compile`'s memory gate.

Lint's placement is a restatement of nncase's rules and its memory figures are estimates. When the
only problem lint found is an estimate (SRAM total, KPU RAM per layer), nncase's real result decides:
it compiles the model (converters.nncase_figures, a child process with seeded random calibration)
and its TOTAL, module list and conv counts go next to lint's, saying which one the verdict used.
"""

from __future__ import annotations

from k210.converters.kpu_rules import Placement
from k210.converters.nncase_figures import NncaseFigures, kpu_memory_error, nncase_figures
from k210.core.errors import CheckFailed

from .memory import SRAM_BYTES
from .report import LintReport

# Ops that nncase turns into one KPUConv2D when lint places them on the KPU (Add and PReLU say how many
# convs they become in OpPlacement.lowered_convs).
_KPU_CONV_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})
# Ops that stay a Conv2D in nncase's stackvm (CPU) module when lint places them on the CPU (a transposed
# conv too: nncase lowers it to pad + Conv2D, measured in a float kmodel).
_CPU_CONV_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})


def lint_figures(report: LintReport) -> dict:
    """Lint's verdict in the terms nncase's schedule can be compared on. A constant-weight Dense that
    stays on the CPU counts as a CPU conv: nncase turns every such MatMul into a Conv2D (matmul_to_conv2d)."""
    on_kpu = (Placement.KPU, Placement.KPU_PARTIAL)
    cpu_dense = sum(op.op == "FULLY_CONNECTED" and op.placement is Placement.CPU and "run-time weights" not in op.reason
                    for op in report.ops)
    imports = not any(op.placement is Placement.UNSUPPORTED for op in report.ops) and not any(
        "TFLite-quantised" in p or "conversion to TFLite failed" in p for p in report.problems)
    lowered_kpu = sum(op.lowered_convs for op in report.ops if op.placement in on_kpu)
    lowered_cpu = sum(op.lowered_convs for op in report.ops if op.placement is Placement.CPU)
    return {
        "imports": imports,
        "kpu_convs": sum(op.op in _KPU_CONV_OPS and op.placement in on_kpu for op in report.ops) + lowered_kpu,
        "cpu_convs": sum(op.op in _CPU_CONV_OPS and op.placement is Placement.CPU for op in report.ops) + cpu_dense
        + lowered_cpu,
        "total_bytes": report.memory.get("total_bytes"),
        "kpu_peak_bytes": report.memory.get("kpu_peak_bytes"),
        "fits": imports and not report.estimate_problems,
        "ok": report.ok,
    }


def nncase_fits(figures: NncaseFigures) -> bool:
    return figures.compiled and figures.total is not None and figures.total <= SRAM_BYTES


def apply_confirmation(report: LintReport, figures: NncaseFigures) -> LintReport:
    """Put nncase's figures in the report and let them decide what lint could only estimate."""
    estimate = lint_figures(report)
    basis = "nncase"
    if figures.compiled and nncase_fits(figures):
        report.problems = [p for p in report.problems if p not in report.estimate_problems]
        if report.estimate_problems:
            report.notes.append("lint's memory estimate said it does not fit; nncase compiled it with TOTAL "
                                f"{_mib(figures.total)} of {_mib(SRAM_BYTES)}: the verdict uses nncase's figure")
        report.estimate_problems = []
    elif figures.compiled:
        report.problems = [p for p in report.problems if p not in report.estimate_problems]
        report.estimate_problems = [f"nncase 1.9's TOTAL is {_mib(figures.total)}: more than the K210's "
                                    f"{_mib(SRAM_BYTES)} SRAM (model {_mib(figures.memory.get('model', 0))}, "
                                    f"data pool {_mib(figures.memory.get('data', 0))})"]
        report.problems += report.estimate_problems
    elif kpu_memory_error(figures.error):
        report.problems = [p for p in report.problems if p not in report.estimate_problems]
        report.estimate_problems = [f"nncase 1.9 refused it: '{figures.error}' (a layer's feature maps do not "
                                    "fit the 2 MiB KPU RAM)"]
        report.problems += report.estimate_problems
    else:
        basis = "lint" if not estimate["imports"] else "nncase"
        if estimate["imports"]:
            report.problems.append(f"nncase 1.9 refused it: {figures.error}")
    report.confirmation = {
        "basis": basis,
        "estimate": estimate,
        "nncase": figures.to_dict(),
        "agrees": _agreement(estimate, figures),
    }
    return report


def _agreement(estimate: dict, figures: NncaseFigures) -> dict:
    agrees = {"imports": estimate["imports"] == figures.compiled}
    if figures.compiled:
        agrees["kpu_convs"] = estimate["kpu_convs"] == figures.kpu_convs
        agrees["cpu_convs"] = estimate["cpu_convs"] == figures.cpu_convs
        if estimate["total_bytes"] and figures.total:
            agrees["total_ratio"] = round(estimate["total_bytes"] / figures.total, 3)
    return agrees


def gate_on_nncase(memory: dict[str, int], estimated_total: int | None) -> None:
    """`k210 compile` went ahead because lint's only problems were estimates: nncase's TOTAL decides.
    (A layer too big for KPU RAM needs no check here: nncase itself refuses it.)"""
    total = memory.get("total")
    if total is not None and total > SRAM_BYTES:
        raise CheckFailed(f"nncase 1.9 compiled it, but its TOTAL {_mib(total)} exceeds the K210's "
                          f"{_mib(SRAM_BYTES)} SRAM (lint estimated {_mib(estimated_total)}): not writing the kmodel")


# Lint's SRAM total over nncase's TOTAL, lowest and highest, on every model nncase compiled in
# benchmarks/lint_vs_nncase (README: 0.92-1.06 there, 0.89 on a model measured before; the range kept).
# An estimate above SRAM x the highest cannot come with a TOTAL that fits: nncase need not be asked.
LINT_TOTAL_RATIO = (0.89, 1.06)


def gate_before_build(report: LintReport, tflite: bytes, input_shape: list[int], *, quant: str,
                      input_type: str) -> dict:
    """`k210 compile`'s memory gate before any calibration data is read or the PTQ build runs: lint's
    estimate refuses where it is beyond its own error; near the line nncase decides the cheap way
    (`k210 lint --confirm`'s route: a few seeded random samples), so a refusal costs about what
    `lint --confirm` does whatever the calibration data. Returns what decided, when it goes on."""
    total = report.memory.get("total_bytes")
    low, high = LINT_TOTAL_RATIO
    if total is not None and total > SRAM_BYTES * high:
        raise CheckFailed(f"lint estimates {_mib(total)} of SRAM, beyond the K210's {_mib(SRAM_BYTES)} by more than "
                          f"its error (lint is {low}-{high}x nncase's TOTAL on the models measured): not compiling "
                          f"(--no-lint-gate lets nncase's full build decide)")
    figures = nncase_figures(tflite, input_shape, quant=quant, input_type=input_type)
    how = "random calibration, " if quant == "uint8" else ""
    asked = f"lint estimated {_mib(total)}; nncase's quick build ({how}as lint --confirm): {figures.seconds:.0f} s"
    if figures.compiled and not nncase_fits(figures):
        raise CheckFailed(f"nncase 1.9's TOTAL is {_mib(figures.total)}: more than the K210's {_mib(SRAM_BYTES)} "
                          f"SRAM ({asked}): not compiling")
    if kpu_memory_error(figures.error):
        raise CheckFailed(f"the model does not fit: nncase 1.9 refused it ('{figures.error}'): a layer's feature "
                          f"maps do not fit the 2 MiB KPU RAM ({asked}): not compiling")
    return {"decided_by": "nncase", "nncase_total_bytes": figures.total, "nncase_seconds": figures.seconds,
            "nncase_error": figures.error}


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.2f} MiB"
