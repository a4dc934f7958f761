"""Lint a TFLite model: the op-level placement table plus the whole-model checks."""

from __future__ import annotations

from k210.converters.kmodel import TensorDesc
from k210.converters.kpu_rules import Placement, place_ops
from k210.converters.optables import COMPILERS, DEFAULT_COMPILER, CompilerTable
from k210.converters.tflite_reader import TFLiteInfo, read_tflite
from k210.core.errors import BadInputError

from .firmware import firmware_for, input_notes
from .memory import estimate_memory, memory_problems
from .model_checks import check_model
from .report import LintReport

QUANT_MODES = ("uint8", "float")


def compiler_table(compiler: str) -> CompilerTable:
    if compiler not in COMPILERS:
        raise BadInputError(f"unknown compiler '{compiler}' (choose from {', '.join(COMPILERS)})")
    return COMPILERS[compiler]


def check_quant(quant: str) -> str:
    if quant not in QUANT_MODES:
        raise BadInputError(f"unknown quantisation '{quant}' (choose from {', '.join(QUANT_MODES)})")
    return quant


def lint_tflite(
    info_or_bytes: TFLiteInfo | bytes,
    *,
    compiler: str = DEFAULT_COMPILER,
    quant: str = "uint8",
    source: str = "<tflite>",
    format: str = "tflite",
) -> LintReport:
    """Where every op of the model runs and whether the model can be compiled and fits."""
    table = compiler_table(compiler)
    check_quant(quant)
    info = read_tflite(bytes(info_or_bytes)) if isinstance(info_or_bytes, (bytes, bytearray)) else info_or_bytes
    placements = place_ops(info, table, quant)
    report = LintReport(source=source, format=format, compiler=table.key, quant=quant, ops=placements)
    report.problems += [f"{p.name} ({p.op}): {p.reason}" for p in placements if p.placement is Placement.UNSUPPORTED]
    problems, notes = check_model(info)
    report.problems += problems
    report.notes += notes
    report.memory = estimate_memory(info, placements, quant)
    problems, notes = memory_problems(report.memory)
    report.problems += problems
    report.estimate_problems += problems
    report.notes += notes
    report.firmware = firmware_for(table.kmodel_version)
    report.notes += input_notes(report.firmware, table.kmodel_version, _compiled_inputs(info, quant))
    report.fallbacks = [f"{p.name} ({p.op}: {p.reason.split(':')[0]})" for p in placements if p.cpu_fallback]
    report.notes += _mode_notes(report, table)
    return report


def _compiled_inputs(info: TFLiteInfo, quant: str) -> list[TensorDesc]:
    """The input a kmodel compiled from this model takes by compile's default (k210.host.compiling): raw
    uint8 pixels with --quant uint8, float32 otherwise; none when the shape is not fixed."""
    if not info.inputs or any(d <= 0 for d in info.inputs[0].shape[1:]):
        return []
    dtype, size = ("uint8", 1) if quant == "uint8" else ("float32", 4)
    shape = [1, *info.inputs[0].shape[1:]]
    for d in shape:
        size *= d
    return [TensorDesc(dtype, shape, size)]


def _mode_notes(report: LintReport, table: CompilerTable) -> list[str]:
    notes = []
    if report.quant == "float" and any(op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
                                       for op in report.ops):
        notes.append("float kmodel: nncase emits only a stackvm (CPU) module; compile with --quant uint8 (PTQ with "
                     "calibration images) to run convs and Dense layers on the KPU")
    if not table.verified_here:
        notes.append(f"{table.title} is not installed here: its op table comes from its source (opcode.def), and "
                     "placements follow the nncase 1.9 rules; only nncase 1.9 results were checked by compiling")
    return notes
