"""Model file -> TFLite -> lint -> kmodel, with a JSON model card next to the kmodel."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import BadInputError, CheckFailed
from .fsutil import sha256_file, write_bytes_atomic, write_json_atomic
from .sidecars import card_path, read_meta


@dataclass
class CompileRequest:
    model: Path
    output: Path
    quant: str = "uint8"  # what the KPU runs, and what lint assumes
    input_type: str | None = None  # default: uint8 with PTQ (raw pixels), float32 otherwise
    input_range: tuple[float, float] = (0.0, 1.0)
    dataset: str | None = None  # calibration dataset (default: the one the model was trained on)
    data_path: str | None = None
    calib: int = 200
    seed: int = 0
    input_node: str | None = None
    output_node: str | None = None
    lint: bool = True


def compile_model(req: CompileRequest) -> dict:
    from k210.converters.compile import CompileSpec, compile_tflite
    from k210.converters.kmodel import parse_kmodel
    from k210.converters.sources import ModelFormat, detect
    from k210.converters.to_tflite import convert_to_tflite

    source = detect(req.model)
    if source.format in (ModelFormat.KMODEL, ModelFormat.ONNX):
        raise BadInputError(f"cannot compile a {source.format.value} file; give .keras/.h5/SavedModel/.pb/.tflite")
    meta = read_meta(source.path) or {}
    started = time.perf_counter()
    tfl = convert_to_tflite(source, input_node=req.input_node, output_node=req.output_node)
    lint_summary = _lint_or_refuse(tfl.data, req.quant, str(source.path)) if req.lint else None

    input_type = req.input_type or ("uint8" if req.quant == "uint8" else "float32")
    spec = CompileSpec(quant=req.quant, input_type=input_type, input_range=req.input_range,
                       input_shape=list(tfl.input_shape))
    dataset_name = req.dataset or meta.get("dataset")
    if req.quant == "uint8":
        if not dataset_name:
            raise BadInputError("uint8 quantisation (the default: the KPU needs it) calibrates on data: pass "
                                "--dataset NAME (no .meta.json next to the model names one), or --quant float")
        if req.calib < 1:
            raise BadInputError("--calib must be at least 1")
        spec.calibration = calibration_samples(dataset_name, req.data_path, req.calib, req.seed, input_type,
                                               tfl.input_shape)
    compiled = compile_tflite(tfl.data, spec)
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
            "path": str(source.path),
            "format": source.format.value,
            "sha256": sha256_file(_hashable_file(source.path)),
        },
        "compiler": {"name": "nncase", "version": metadata.version("nncase"), "target": "k210",
                     "seconds": round(compile_seconds, 3)},
        "inputs": [{"name": tfl.input_name, "shape": d.shape, "dtype": d.dtype, "layout": "NHWC"} for d in info.inputs],
        "outputs": [{"name": tfl.output_name, "shape": d.shape, "dtype": d.dtype, "layout": "NHWC"}
                    for d in info.outputs],
        "preprocessing": {
            "input_type": input_type,
            "input_range": list(req.input_range),
            "board_sends": "raw uint8 pixels (nncase maps 0..255 onto input_range)" if input_type == "uint8"
            else "float32 tensors, already normalised",
            "normalisation": meta.get("preprocessing", "x / 255 (uint8 pixels to [0, 1])"),
        },
        "labels": meta.get("labels"),
        "quantisation": {
            "mode": req.quant,
            "calibration": (
                {"dataset": dataset_name, "samples": req.calib, "method": spec.calibrate_method, "seed": req.seed}
                if req.quant == "uint8" else None
            ),
        },
        "memory": compiled.memory,
        "notes": tfl.notes,
        "lint": lint_summary,
    }
    write_json_atomic(card_path(req.output), card)
    return card


def calibration_samples(dataset_name: str, data_path: str | None, count: int, seed: int, input_type: str,
                        input_shape: list[int]) -> np.ndarray:
    from k210.models.datasets import load_dataset, normalise, sample_calibration

    dataset = load_dataset(dataset_name, path=data_path, seed=seed)
    raw = sample_calibration(dataset, count, seed)
    samples = raw[..., None] if input_type == "uint8" else normalise(raw)
    per_image = int(np.prod(input_shape[1:]))
    if int(np.prod(samples.shape[1:])) != per_image:
        raise BadInputError(f"dataset '{dataset_name}' images {raw.shape[1:]} do not fit the model input {input_shape}")
    return np.ascontiguousarray(samples.reshape(len(samples), *input_shape[1:]))


def _hashable_file(path: Path) -> Path:
    return path / "saved_model.pb" if path.is_dir() else path


def _lint_or_refuse(tflite: bytes, quant: str, source: str) -> dict | None:
    """Lint the model the way it will be compiled; refuse with lint's report, not nncase's message."""
    from k210.host.lint import lint_tflite

    report = lint_tflite(tflite, compiler="nncase1.9", quant=quant, source=f"{source} (as converted)")
    if not report.ok:
        raise CheckFailed("lint found problems, not compiling:\n" + report.render_text())
    data = report.to_dict()
    return {"ok": data["ok"], "placements": _count_placements(data.get("ops", []))}


def _count_placements(ops: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["placement"]] = counts.get(op["placement"], 0) + 1
    return counts
