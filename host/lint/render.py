"""The human text of a lint report: one op table, fixes, memory, firmware, and a verdict line."""

from __future__ import annotations

from k210.converters.optables import COMPILERS
from k210.core.textfmt import format_table

from .blockers import fallback_groups, problem_groups
from .report import LintReport

KIB = 1024
MIB = 1024 * 1024


def render_report(report: LintReport, *, strict: bool = False) -> str:
    # The verdict first (what most readers want), and again last, under the details it sums up.
    lines = [verdict_line(report, strict=strict), *_blocker_lines(report), _headline(report), ""]
    if report.findings:
        lines += [report.findings_title, format_table(
            ("name", "type", "verdict", "reason"),
            [(f.name, f.kind, f.verdict, f.reason) for f in report.findings],
        ), ""]
    if report.ops:
        title = _ops_title(report)
        lines += [title, format_table(
            ("#", "name", "op", "where", "reason"),
            [(op.index, op.name, op.op, op.placement.value, op.reason) for op in report.ops],
        ), ""]
    fixes = [(f.name, f.kind, f.fix) for f in report.findings if f.fix and f.verdict == "unsupported"]
    fixes += [(op.name, op.op, op.fix) for op in report.ops if op.fix]
    if fixes:
        lines.append("how to fix")
        lines += [part for line in _grouped_fixes(fixes) for part in _fit(line)]
        lines.append("")
    lines += _memory_lines(report.memory)
    lines += _confirmation_lines(report.confirmation)
    lines += _firmware_lines(report.firmware)
    if report.notes:
        lines.append("notes")
        lines += [f"  - {item}" for item in report.notes]
    if report.problems:
        lines.append("problems (what blocks first; identical ones grouped)")
        lines += [part for group in problem_groups(report) for part in _fit(f"  - {group.line()}")]
    if report.problems and report.fallbacks:
        lines.append("CPU fallbacks (KPU-capable work that stays on the CPU)")
        lines += [part for group in fallback_groups(report) for part in _fit(f"  - {group.line()}")]
    lines.append(verdict_line(report, strict=strict))
    return "\n".join(lines)


def verdict_line(report: LintReport, *, strict: bool = False) -> str:
    if report.problems:
        n = len(problem_groups(report))
        also = f"; also {len(report.fallbacks)} CPU fallback{'s' if len(report.fallbacks) != 1 else ''}" \
            if report.fallbacks else ""
        if report.kmodel is not None:
            return f"verdict: FAIL: {n} problem{'s' if n != 1 else ''}; this kmodel will not run on a K210 as it " \
                   f"is{also}"
        return f"verdict: FAIL: {n} problem{'s' if n != 1 else ''}; {_compiler_title(report)} cannot build a " \
               f"working K210 model from this as it is{also}"
    counts = report.placement_counts()
    on_kpu = counts["kpu"] + counts["kpu-partial"]
    summary = f"{on_kpu} of {len(report.ops)} on the KPU ({counts['kpu']} kpu, {counts['kpu-partial']} " \
              f"kpu-partial), {counts['cpu']} on the CPU"
    if report.kmodel is not None:
        summary = "KPU code present" if report.kmodel.get("kpu_code") else "no KPU code: CPU only"
    if report.fallbacks:
        n = len(report.fallbacks)
        tail = f"{n} CPU fallback{'s' if n != 1 else ''}: {'; '.join(report.fallbacks)}"
        if strict:
            return f"verdict: FAIL (--strict): {tail}"
        return f"verdict: OK with {tail} (--strict fails on these); {summary}"
    return f"verdict: OK: {summary}"


def _headline(report: LintReport) -> str:
    if report.kmodel is not None:
        return f"{report.source}: kmodel v{report.kmodel.get('version')} (made by {_compiler_title(report)})"
    mode = ("assuming uint8 PTQ, the mode that uses the KPU (--quant float for a float kmodel)"
            if report.quant == "uint8" else "float kmodel (--quant float): no KPU code, everything on the CPU")
    table = COMPILERS.get(report.compiler)
    target = f"{table.title} -> kmodel v{table.kmodel_version}" if table else report.compiler
    line = f"{report.source} ({report.format}) -> {target},"
    if len(line) > 100:  # a long path gets a line of its own: the rest still fits 100 columns
        line = f"{report.source}\n  ({report.format}) -> {target},"
    return f"{line}\n  {mode}"


def _compiler_title(report: LintReport) -> str:
    table = COMPILERS.get(report.compiler)
    return table.title if table else report.compiler


def _memory_lines(memory: dict) -> list[str]:
    if not memory:
        return []
    lines = ["memory (lint's estimates)"]
    if memory.get("kpu_peak_bytes") is not None:
        layer = f" ({memory['kpu_peak_layer']})" if memory.get("kpu_peak_layer") else ""
        lines.append(f"  KPU RAM: peak layer{layer} {_kib(memory['kpu_peak_bytes'])} of "
                     f"{_kib(memory['kpu_ram_bytes'])} (input + output feature maps, uint8)")
    if memory.get("model_bytes") is not None:
        io = f" + input/output {_kib(memory['io_bytes'])}" if memory.get("io_bytes") else ""
        lines.append(f"  SRAM: model {_kib(memory['model_bytes'])} ({memory.get('model_basis', '')}) + working "
                     f"{_kib(memory.get('working_bytes', 0))}{io} = {_kib(memory['total_bytes'])} of "
                     f"{_kib(memory['sram_bytes'])}")
        fits = "fits" if memory["model_bytes"] <= memory["maixpy_heap_bytes"] else "does NOT fit"
        lines.append(f"  MaixPy/CanMV system heap (~{_kib(memory['maixpy_heap_bytes'])} free on standard builds, "
                     f"the whole model is malloc'ed): {fits}")
    for key in ("kmodel_bytes", "data_bytes", "rdata_bytes", "kpu_bytes", "main_bytes"):
        if memory.get(key) is not None:
            lines.append(f"  {key.replace('_bytes', '').replace('_', ' ')}: {_kib(memory[key])}")
    lines.append("")
    return [part for line in lines for part in _fit(line)]


def _fit(line: str, width: int = 100) -> list[str]:
    """A detail line wrapped to `width` columns, continuation lines indented under it."""
    import textwrap

    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _confirmation_lines(confirmation: dict | None) -> list[str]:
    """nncase's own figures beside lint's (k210 lint --confirm)."""
    if not confirmation:
        return []
    est, real = confirmation["estimate"], confirmation["nncase"]
    lines = ["nncase 1.9 (--confirm: compiled in a child process, seeded random calibration)"]
    if not real["compiled"]:
        lines.append(f"  refused: {real['error']}")
    else:
        total = real.get("total")
        ratio = f" (lint/nncase {est['total_bytes'] / total:.2f})" if total and est.get("total_bytes") else ""
        lines += [
            f"  TOTAL: nncase {_kib(total) if total else '?'}, lint estimate {_kib(est['total_bytes'] or 0)}{ratio}",
            "  nncase memory: " + ", ".join(f"{k} {_kib(v)}" for k, v in real["memory"].items()),
            f"  modules: {', '.join(real['modules'])} ({real['kpu_functions']} KPU functions)",
            f"  KPU convs: nncase {real['kpu_convs']}, lint {est['kpu_convs']}; "
            f"CPU convs: nncase {real['cpu_convs']}, lint {est['cpu_convs']}",
        ]
    basis = "nncase's figures" if confirmation["basis"] == "nncase" else "lint's estimate"
    lines += [f"  the verdict below uses {basis}", ""]
    return lines


def _firmware_lines(firmware: list[dict]) -> list[str]:
    if not firmware:
        return []
    rows = [(fw["name"], "yes" if fw["loads"] else "no", fw["note"]) for fw in firmware]
    return [format_table(("firmware", "loads it", "note"), rows), ""]  # fits 100 columns, like every table


def _kib(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.2f} MiB"
    return f"{n / KIB:.1f} KiB"


def _blocker_lines(report: LintReport, width: int = 100, shown: int = 3) -> list[str]:
    """Right under the verdict, one line per blocker in blocking order (unsupported ops, whole-model
    problems, memory), then the CPU fallbacks' count: the details follow further down."""
    if not report.problems:
        return []
    groups = problem_groups(report)
    lines = [_clip(f"  - {group.line(names=1, fix=False)}", width) for group in groups[:shown]]
    if len(groups) > shown:
        lines.append(f"  - and {len(groups) - shown} more (problems, below)")
    if report.fallbacks:
        n = len(report.fallbacks)
        kinds = len(fallback_groups(report))
        lines.append(f"  - then {n} CPU fallback{'s' if n != 1 else ''} of {kinds} kind{'s' if kinds != 1 else ''} "
                     "(listed below)")
    return lines


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 4].rstrip() + " ..."


def _grouped_fixes(fixes: list[tuple[str, str, str]]) -> list[str]:
    """One line per (op, fix): the same advice for 9 depthwise convs is said once, with their names."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, kind, fix in fixes:
        names = groups.setdefault((kind, fix), [])
        if name not in names:
            names.append(name)
    lines = []
    for (kind, fix), names in groups.items():
        if len(names) == 1:
            lines.append(f"  {names[0]} ({kind}): {fix}")
        else:
            more = ", ..." if len(names) > 3 else ""
            lines.append(f"  {len(names)} {kind} ({', '.join(names[:3])}{more}): {fix}")
    return lines


def _ops_title(report: LintReport) -> str:
    if report.kmodel is not None:
        return "kmodel modules"
    if report.format == "onnx":
        return f"ONNX nodes ({_compiler_title(report)} rules)"
    return f"TFLite ops ({_compiler_title(report)} sees these)"
