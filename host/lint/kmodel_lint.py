"""A compiled kmodel in the lint report format: `k210 inspect` findings, one row per module."""

from __future__ import annotations

from k210.converters.kmodel import KModelInfo, UnloadableKmodelError, parse_kmodel
from k210.converters.kpu_rules import KPU_RAM_BYTES, OpPlacement, Placement

from .firmware import firmware_for, input_notes, output_notes
from .memory import MAIXPY_HEAP_BYTES, SRAM_BYTES
from .report import LintReport

_MAKERS = {5: "nncase 1.x", 4: "nncase 0.2", 3: "nncase 0.1"}


def lint_kmodel(data: bytes, *, source: str = "<kmodel>") -> LintReport:
    try:
        info = parse_kmodel(data)
    except UnloadableKmodelError as exc:
        return _unloadable(exc, source, len(data))
    rows = [_module_row(i, module.type, info) for i, module in enumerate(info.modules)]
    quant = "uint8" if info.has_kpu_code else ("float" if info.version == 5 else "unknown")
    report = LintReport(source=source, format="kmodel", compiler=_MAKERS.get(info.version, f"v{info.version}"),
                        quant=quant, ops=rows, kmodel=info.to_dict())
    report.firmware = firmware_for(info.version)
    report.notes.extend(input_notes(report.firmware, info.version, info.inputs))
    report.notes.extend(output_notes(report.firmware, info.version, len(info.outputs)))
    report.memory = _memory(info, len(data))
    if report.memory["total_bytes"] > SRAM_BYTES:
        report.problems.append(f"kmodel {len(data) / 2**20:.2f} MiB + data pool exceed the K210's 6 MiB SRAM")
    elif len(data) > MAIXPY_HEAP_BYTES:
        report.notes.append("larger than the ~2 MiB system heap free on standard MaixPy builds")
    if info.version == 5 and not info.has_kpu_code:
        report.fallbacks.append("no k210 module: every layer runs on the CPU (compiled without PTQ)")
        report.notes.append("no KPU code: recompile with --quant uint8 (PTQ) to use the KPU")
    if info.version in (3, 4) and not info.has_kpu_code:
        report.fallbacks.append(f"no KPU layer among the {info.layers} of this kmodel v{info.version}: "
                                "every layer runs on the CPU")
    if not any(fw["loads"] for fw in report.firmware):
        report.problems.append(f"no known firmware loads kmodel v{info.version}")
    return report


def _unloadable(exc: UnloadableKmodelError, source: str, size: int) -> LintReport:
    fmt = exc.format
    report = LintReport(source=source, format="kmodel", compiler=fmt.made_by, quant="unknown",
                        kmodel={"version": fmt.version, "size": size, "format": fmt.to_dict(), "kpu_code": None})
    report.firmware = [dict(entry, loads=False) for entry in firmware_for(fmt.version)]
    report.problems.append(str(exc))
    return report


def _module_row(index: int, module_type: str, info: KModelInfo) -> OpPlacement:
    if info.layers is not None:  # v3/v4: one module, its layer headers say which run on the KPU
        unit = "layers" if info.version == 3 else "nodes"
        where = Placement.KPU if info.kpu_layers else Placement.CPU
        return OpPlacement(index, f"module {index}", module_type, where,
                           f"{info.kpu_layers} of {info.layers} {unit} run on the KPU "
                           f"({'K210Conv/padding/upload layers' if info.version == 3 else 'KPUUpload/KPUConv2D'})")
    if module_type == "k210":
        return OpPlacement(index, f"module {index}", module_type, Placement.KPU, "KPU code (k210 module)")
    if module_type == "stackvm":
        return OpPlacement(index, f"module {index}", module_type, Placement.CPU, "CPU code (nncase stack VM)")
    return OpPlacement(index, f"module {index}", module_type, Placement.CPU,
                       "whole model in one module (older kmodel format)")


def _memory(info, size: int) -> dict:
    pools = info.mempools
    working = pools.get("data", 0) + (info.main_memory or 0)
    memory = {
        "kmodel_bytes": size,
        "kpu_ram_bytes": KPU_RAM_BYTES,
        "model_bytes": size,
        "model_basis": "the kmodel file",
        "working_bytes": working,
        "total_bytes": size + working,
        "sram_bytes": SRAM_BYTES,
        "maixpy_heap_bytes": MAIXPY_HEAP_BYTES,
    }
    for key in ("rdata", "data", "kpu", "main"):
        if key in pools:
            memory[f"{key}_bytes"] = pools[key]
    return memory
