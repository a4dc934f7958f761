"""Lint any model file or Keras model object: pick the checks for its format, and convert the way
`k210 compile` converts (the project's converter, batch fixed to 1) before the TFLite-level check."""

from __future__ import annotations

from pathlib import Path

from k210.converters.optables import DEFAULT_COMPILER
from k210.core.errors import BadInputError, ToolFailure

from .report import Finding, LintReport
from .tflite_lint import check_quant, compiler_table, lint_tflite


def lint_path(path: str | Path, *, compiler: str = DEFAULT_COMPILER, quant: str = "uint8",
              input_node: str | None = None, output_node: str | None = None) -> LintReport:
    from k210.converters.sources import ModelFormat, detect

    compiler_table(compiler)  # fail on a bad option before any slow load
    check_quant(quant)
    source = detect(path)
    shown = str(source.path)
    needs_tf = None
    if source.format is ModelFormat.KERAS and source.path.suffix == ".keras":
        from .keras_config import NeedsTensorFlow, lint_keras_archive

        try:
            return lint_keras_archive(source.path, compiler=compiler, quant=quant, shown=shown)
        except NeedsTensorFlow as exc:
            needs_tf = f"TensorFlow loaded to convert it: {exc}, which its config does not decide"
    if source.format in (ModelFormat.KERAS, ModelFormat.FROZEN_PB, ModelFormat.SAVED_MODEL):
        from k210.core.quiet import preload_tensorflow

        preload_tensorflow()  # keep TF's start-up banner off the lint report
    if source.format is ModelFormat.TFLITE:
        return _lint_tflite_file(source.path, compiler, quant, shown)
    if source.format is ModelFormat.KMODEL:
        from .kmodel_lint import lint_kmodel

        return lint_kmodel(_read(source.path), source=shown)
    if source.format is ModelFormat.ONNX:
        from .onnx_lint import lint_onnx

        return lint_onnx(source.path, compiler=compiler, quant=quant)
    if source.format is ModelFormat.KERAS:
        from k210.converters.to_tflite import load_keras

        report = lint_model(load_keras(source.path), compiler=compiler, quant=quant, name=shown, format="keras")
        report.notes += [needs_tf] if needs_tf else []
        return report
    if source.format is ModelFormat.FROZEN_PB:
        return _lint_frozen_pb(source, compiler, quant, input_node, output_node)
    return _lint_converted(source, compiler, quant)


def _lint_tflite_file(path: Path, compiler: str, quant: str, shown: str) -> LintReport:
    """Lint what `k210 compile` will compile: float16 weights folded to float32 first, as it does."""
    from k210.converters.densify import count_sparse_weights, densify_bytes
    from k210.converters.dequantize import count_float16_weights, dequantize_float16_bytes
    from k210.converters.tflite_reader import read_tflite

    data = _read(path)
    read_tflite(data)  # a corrupt or truncated file is one clear BadInputError before anything else reads it
    densified = folded = None
    if count_sparse_weights(data):
        densified = densify_bytes(data)
        data = densified.data
    if count_float16_weights(data):
        folded = dequantize_float16_bytes(data)
        data = folded.data
    report = lint_tflite(data, compiler=compiler, quant=quant, source=shown)
    if folded is not None:
        report.notes.insert(0, f"float16 weights: nncase 1.9 refuses them, so k210 compile folds their "
                               f"{folded.folded} DEQUANTIZE ops into float32 weights first; this is lint of that model")
    if densified is not None:
        report.notes.insert(0, f"sparse weights: nncase 1.9 has no DENSIFY, so k210 compile writes their "
                               f"{densified.folded} DENSIFY ops' dense values into the model first; this is lint of "
                               "that model")
    return report


def confirm_path(report: LintReport, path: str | Path, *, compiler: str = DEFAULT_COMPILER, quant: str = "uint8",
                 input_node: str | None = None, output_node: str | None = None, seed: int = 0) -> LintReport:
    """`k210 lint --confirm`: compile the model as `k210 compile` converts it and let nncase's figures decide."""
    from k210.converters.nncase_figures import nncase_figures
    from k210.converters.sources import ModelFormat, detect
    from k210.converters.to_tflite import convert_to_tflite

    from .confirm import apply_confirmation

    if compiler != "nncase1.9":
        report.notes.append(f"--confirm runs nncase 1.9 only; {compiler} is not installed here")
        return report
    source = detect(path)
    if source.format in (ModelFormat.KMODEL, ModelFormat.ONNX):
        report.notes.append(f"--confirm compiles TensorFlow models only; a {source.format.value} file has nothing "
                            "to confirm")
        return report
    try:
        converted = convert_to_tflite(source, input_node=input_node, output_node=output_node)
    except ToolFailure as exc:
        report.notes.append(f"--confirm: conversion failed, nothing to compile ({exc})")
        return report
    figures = nncase_figures(converted.data, converted.input_shape, quant=quant, seed=seed)
    return apply_confirmation(report, figures)


def lint_model(model, *, compiler: str = DEFAULT_COMPILER, quant: str = "uint8", name: str | None = None,
               format: str = "keras model") -> LintReport:
    """Lint a Keras model object: its layers, then the TFLite ops the project's converter makes of it."""
    from k210.converters.to_tflite import keras_to_tflite

    from .keras_layers import check_layers

    compiler_table(compiler)
    check_quant(quant)
    shown = name or getattr(model, "name", "model")
    findings = check_layers(model, quant=quant)
    try:
        converted = keras_to_tflite(model)
    except (ToolFailure, BadInputError) as exc:
        report = _conversion_failed(shown, format, compiler, quant, exc, findings)
    else:
        report = lint_tflite(converted.data, compiler=compiler, quant=quant, source=shown, format=format)
        report.notes = converted.notes + report.notes
    report.findings, report.findings_title = findings, "Keras layers (before conversion)"
    return report


def _lint_frozen_pb(source, compiler: str, quant: str, input_node: str | None,
                    output_node: str | None) -> LintReport:
    from k210.converters.to_tflite import find_io_nodes, read_graph_def

    from .tf_graph import check_graph_def

    graph_def = read_graph_def(source.path)
    input_node, output_node = find_io_nodes(graph_def, input_node, output_node)
    findings, problems, notes = check_graph_def(graph_def, compiler_table(compiler), input_node)
    report = _lint_converted(source, compiler, quant, input_node, output_node, findings)
    report.findings, report.findings_title = findings, "TF graph nodes (before conversion)"
    report.problems = problems + report.problems
    report.notes = [n for n in notes if n not in report.notes] + report.notes
    return report


def _lint_converted(source, compiler: str, quant: str, input_node: str | None = None,
                    output_node: str | None = None, findings: list[Finding] | None = None) -> LintReport:
    from k210.converters.to_tflite import convert_to_tflite

    shown = str(source.path)
    try:
        converted = convert_to_tflite(source, input_node=input_node, output_node=output_node)
    except ToolFailure as exc:
        return _conversion_failed(shown, source.format.value, compiler, quant, exc, findings or [])
    report = lint_tflite(converted.data, compiler=compiler, quant=quant, source=shown, format=source.format.value)
    report.notes = converted.notes + report.notes
    return report


def _conversion_failed(shown: str, format: str, compiler: str, quant: str, exc: Exception,
                       findings: list[Finding]) -> LintReport:
    """No TFLite graph to check: the pre-conversion findings are all there is."""
    report = LintReport(source=shown, format=format, compiler=compiler, quant=quant)
    report.problems.append(f"conversion to TFLite failed: {exc}")
    report.problems += [f"{f.name} ({f.kind}): {f.reason}" for f in findings if f.verdict == "unsupported"]
    return report


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}") from None
