"""Model file -> TFLite -> lint -> kmodel, with a JSON model card next to the kmodel."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k210.core.errors import BadInputError, CheckFailed
from k210.core.fsutil import sha256_file, write_bytes_atomic, write_json_atomic
from k210.core.quiet import preload_tensorflow

from .sidecars import card_path, read_meta

if TYPE_CHECKING:
    from k210.converters.kmodel import KModelInfo


def read_input_metadata(tflite: bytes):
    from k210.converters.tflite_metadata import read_input_metadata as read

    return read(tflite)


@dataclass
class CompileRequest:
    model: Path
    output: Path
    quant: str = "uint8"  # what the KPU runs, and what lint assumes
    input_type: str | None = None  # default: uint8 with PTQ (raw pixels), float32 otherwise
    input_range: tuple[float, float] | None = None  # None: (0, 1), pixels / 255; kept for older callers
    dataset: str | None = None  # calibration dataset (default: the one the model was trained on)
    data_path: str | None = None  # a named set's files, or the user's image folder / .npz / .npy
    overrides: Any = None  # converters.preprocess.Overrides: mean/std/colour/resize (and input range)
    calib: int = 200
    holdout: float | None = None  # of the user's own data, left for checks (None: host.heldout's default)
    seed: int = 0
    input_node: str | None = None
    output_node: str | None = None
    lint: bool = True
    lint_gate: bool = True  # lint's memory estimate refuses (or asks nncase the cheap way) before the PTQ build
    output_kinds: dict[int, str] | None = None  # how verify/hil judge each output (host/judge/rules.py)
    calibrate_method: str = "no_clip"  # nncase's PTQ activation ranges: no_clip (min/max), l2, kld_m0.., cdf
    mse_weights: bool = False  # KPU weights quantised by least squares (nncase's use_mse_quant_w)
    transforms: Any = None  # converters.transforms.TransformOptions: equalisation etc. before nncase
    postprocess: dict | None = None  # the decoded task verify/hil judge by (host/judge/tasks.py)


def compile_model(req: CompileRequest) -> dict:
    from k210.converters.compile import CompileSpec, compile_tflite
    from k210.converters.kmodel import parse_kmodel
    from k210.converters.sources import ModelFormat, detect
    from k210.converters.to_tflite import convert_to_tflite

    source = detect(req.model)
    if source.format in (ModelFormat.KMODEL, ModelFormat.ONNX):
        raise BadInputError(f"cannot compile a {source.format.value} file; give .keras/.h5/SavedModel/.pb/.tflite")
    meta = read_meta(source.path) or {}
    if source.format is not ModelFormat.TFLITE:  # a .tflite is linted (and maybe refused) before TF loads
        preload_tensorflow()
    started = time.perf_counter()
    tfl = convert_to_tflite(source, input_node=req.input_node, output_node=req.output_node)
    input_type = req.input_type or ("uint8" if req.quant == "uint8" else "float32")
    own = read_input_metadata(tfl.data)  # a pretrained .tflite says how its input is normalised
    prep, normalisation_from = preprocess_for(tfl.input_shape, input_type, req, own)
    lint_summary = (_lint_or_refuse(tfl.data, req.quant, str(source.path),
                                    gate=(list(tfl.input_shape), input_type) if req.lint_gate else None)
                    if req.lint else None)  # before any calibration data is read: a refusal costs seconds
    preload_tensorflow()  # what follows may import it (transforms, calibration): its banner kept off
    spec = CompileSpec(quant=req.quant, input_type=input_type, input_range=prep.input_range,
                       input_shape=list(tfl.input_shape), calibrate_method=req.calibrate_method,
                       use_mse_quant_w=req.mse_weights)
    if req.quant != "uint8" and (req.mse_weights or (req.transforms is not None and req.transforms.any)):
        raise BadInputError("--mse-weights and the transforms (--equalize, --absorb-bias, --bias-correct, --dfq) "
                            "act on uint8 quantisation: drop them or use --quant uint8")
    if input_type == "uint8" and (any(prep.mean) or any(v != 1.0 for v in prep.std)):
        spec.mean, spec.std = _per_channel(prep.mean, prep.channels), _per_channel(prep.std, prep.channels)
    dataset_name = req.dataset or (None if req.data_path else meta.get("dataset"))
    calibration = None
    if req.quant == "uint8":
        if not dataset_name and not req.data_path:
            raise BadInputError("uint8 quantisation (the default: the KPU needs it) calibrates on data: pass "
                                "--dataset NAME, --data DIR|FILE.npz or --dataset random (no .meta.json next to "
                                "the model names one), or --quant float")
        if req.calib < 1:
            raise BadInputError("--calib must be at least 1")
        if req.holdout is not None and not 0 <= req.holdout < 1:
            raise BadInputError("--holdout must be at least 0 and below 1 (the share of your data kept for checks)")
        calibration = calibration_inputs(dataset_name, req.data_path, req.calib, req.seed, prep, tfl.input_shape,
                                         holdout=req.holdout)
        spec.calibration = calibration.kmodel
    model_bytes, transformed = _transform(tfl.data, req.transforms, calibration)
    compiled = compile_tflite(model_bytes, spec)
    if lint_summary and lint_summary.get("estimate_only"):  # lint could only estimate: nncase's figure decides
        from k210.host.lint.confirm import gate_on_nncase

        gate_on_nncase(compiled.memory, lint_summary.get("estimated_total_bytes"))
    info = parse_kmodel(compiled.kmodel)
    compile_seconds = time.perf_counter() - started

    write_bytes_atomic(req.output, compiled.kmodel)
    card = {
        "card_version": 1,
        "kmodel": {
            "file": req.output.name,
            "sha256": sha256_file(req.output),
            "size": len(compiled.kmodel),
            "version": info.version,
            "modules": [m.type for m in info.modules],
            "kpu_code": info.has_kpu_code,
            "loaded_by": info.loaders,
        },
        "source": {
            "path": os.path.relpath(source.path.resolve(), req.output.resolve().parent),
            "path_base": "card",  # relative to the card's folder, so the card works from any directory
            "format": source.format.value,
            "sha256": sha256_file(_hashable_file(source.path)),
        },
        "compiler": {"name": "nncase", "version": metadata.version("nncase"), "target": "k210",
                     "seconds": round(compile_seconds, 3)},
        "inputs": [{"name": tfl.input_name, "shape": d.shape, "dtype": d.dtype, "layout": "NHWC"} for d in info.inputs],
        "outputs": [{"name": name, "shape": d.shape, "dtype": d.dtype, "layout": "NHWC", "head": head,
                     **({"kind": (req.output_kinds or {})[i]} if i in (req.output_kinds or {}) else {})}
                    for i, (name, d, head) in enumerate(zip(_output_names(tfl.output_name, len(info.outputs)),
                                                            info.outputs, _heads(tfl.data, info.outputs)))],
        "postprocess": req.postprocess,
        "preprocessing": {
            "spec": prep.to_dict(),  # the one spec calibration, verify, hil and deploy all apply
            "summary": prep.describe(),
            "input_type": input_type,
            "input_range": list(prep.input_range),
            "board_sends": "raw uint8 pixels (nncase maps 0..255 onto input_range)" if input_type == "uint8"
            else "float32 tensors, already normalised",
            "normalisation": meta.get("preprocessing", "x / 255 (uint8 pixels to [0, 1])"),
            "normalisation_from": normalisation_from or "defaults",
            "model_metadata": own.describe() if own.says_anything else None,
        },
        "labels": meta.get("labels"),
        "quantisation": {
            "mode": req.quant,
            "calibration": (
                {"dataset": dataset_name, "data": _abs(req.data_path), "source": calibration.source,
                 "samples": len(calibration), "method": spec.calibrate_method, "seed": req.seed,
                 "use_mse_quant_w": spec.use_mse_quant_w,
                 # verify and hil leave these samples out of their checks (host/heldout.py)
                 "holdout": _holdout(req, dataset_name), "sample_sha256": calibration.hashes}
                if calibration is not None else None
            ),
            "transforms": transformed,
        },
        "memory": compiled.memory,
        "notes": tfl.notes + _firmware_notes(info),
        "lint": lint_summary,
    }
    write_json_atomic(card_path(req.output), card)
    return card


def _transform(tflite: bytes, options, calibration) -> tuple[bytes, dict | None]:
    """The float model after the asked transforms (checked against the original), and what they did."""
    if options is None or not options.any:
        return tflite, None
    from k210.converters.transforms import apply

    done = apply(tflite, options, None if calibration is None else calibration.reference)
    return done.tflite, done.report


def preprocess_for(input_shape: list[int], input_type: str, req: CompileRequest, own_metadata=None):
    """The spec of this compile: the model's geometry, its metadata, the flags, the compiled input type;
    and where the normalisation came from ("metadata", "flags", "flags over metadata" or None)."""
    from k210.converters.preprocess import Overrides, spec_for_model, with_metadata

    overrides = req.overrides or Overrides()
    if req.input_range is not None and overrides.input_range is None:
        overrides = replace(overrides, input_range=tuple(req.input_range))
    spec = spec_for_model(input_shape, dtype=input_type, overrides=overrides)
    return with_metadata(spec, own_metadata, overrides)


def calibration_inputs(dataset_name: str | None, data_path: str | None, count: int, seed: int, prep,
                       input_shape: list[int], *, holdout: float | None = None):
    """`count` calibration samples through `prep`, in the compiled input's dtype and shape (nncase's PTQ);
    from the user's own data, only from its calibration share (the rest is for checks)."""
    from .heldout import DEFAULT_HOLDOUT
    from .inputdata import DataRequest, load_inputs

    share = DEFAULT_HOLDOUT if holdout is None else holdout
    return load_inputs(DataRequest(dataset_name, data_path, seed, "train", count, holdout=share), prep,
                       input_shape, purpose="calibration")


def _holdout(req: CompileRequest, dataset_name: str | None) -> float | None:
    """The share of the user's own data left for checks (None: a named set's own train/test split applies)."""
    from .heldout import DEFAULT_HOLDOUT

    if dataset_name is not None:
        return None
    return DEFAULT_HOLDOUT if req.holdout is None else req.holdout


def _per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    return list(values) * channels if len(values) == 1 else list(values)


def _heads(tflite: bytes, outputs) -> list[str | None]:
    """Per kmodel output, the softmax/sigmoid that makes it in the TFLite model (paired by element count)."""
    import math

    from k210.converters.tflite_reader import output_heads

    try:
        heads = output_heads(tflite)
    except Exception:  # noqa: BLE001 - a hint for the pass rules, never a reason to fail a compile
        return [None] * len(outputs)
    left = list(heads)
    result = []
    for desc in outputs:
        size = math.prod(d for d in desc.shape if d > 0)
        match = next((h for h in left if h[0] == size), None)
        if match is not None:
            left.remove(match)
        result.append(match[1] if match else None)
    return result


def _output_names(joined: str, count: int) -> list[str]:
    names = joined.split(",") if joined else []
    return names if len(names) == count else [joined if count == 1 else f"output_{i}" for i in range(count)]


def _abs(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _hashable_file(path: Path) -> Path:
    return path / "saved_model.pb" if path.is_dir() else path


class LintRefused(CheckFailed):
    """compile's refusal: one line for stderr, lint's whole report (hundreds of lines) for stdout."""

    def __init__(self, line: str, report_text: str) -> None:
        super().__init__(line)
        self.report_text = report_text


def _lint_or_refuse(tflite: bytes, quant: str, source: str,
                    gate: tuple[list[int], str] | None = None) -> dict | None:
    """Lint the model the way it will be compiled; refuse with lint's report, not nncase's message.
    With `gate` (input shape, input type), a memory estimate over the line is settled before the build."""
    from k210.host.lint import lint_tflite
    from k210.host.lint.confirm import gate_before_build
    from k210.host.lint.render import render_report

    report = lint_tflite(tflite, compiler="nncase1.9", quant=quant, source=f"{source} (as converted)")
    if not report.ok and not report.only_estimates:
        first = " ".join(report.problems[0].split()) if report.problems else "see the report"
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise LintRefused(f"lint found {len(report.problems)} problem(s), not compiling: {first}{more}",
                          render_report(report))
    data = report.to_dict()
    return {"ok": data["ok"], "placements": _count_placements(data.get("ops", [])),
            "estimate_only": report.only_estimates, "estimated_total_bytes": report.memory.get("total_bytes"),
            "estimate_problems": list(report.estimate_problems),
            **({"gate": gate_before_build(report, tflite, gate[0], quant=quant, input_type=gate[1])}
               if gate is not None and report.only_estimates else {})}


def _count_placements(ops: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["placement"]] = counts.get(op["placement"], 0) + 1
    return counts


def _firmware_notes(info: KModelInfo) -> list[str]:
    """Per firmware that loads the kmodel, an input its runner cannot take or outputs it does not return
    (k210.core.firmwares' figures, as lint of the kmodel says them), before any board run."""
    from k210.host.lint.firmware import firmware_for, input_notes, output_notes

    firmware = firmware_for(info.version)
    return input_notes(firmware, info.version, info.inputs) + output_notes(firmware, info.version, len(info.outputs))
