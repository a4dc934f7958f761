"""Run a kmodel in nncase's simulator and its reference in TF on the same inputs; compare every output.

The library behind `k210 verify` (and the pieces `k210 hil` shares): where the reference is, which
preprocessing applies, how kmodel outputs pair with the reference's, and the per-output figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from k210.core.errors import BadInputError, CheckFailed


@dataclass
class VerifyRequest:
    kmodel: str
    reference: str | None = None  # default: the model card's source
    dataset: str | None = None
    data: str | None = None
    seed: int = 0
    limit: int | None = None
    min_agreement: float = 0.99
    min_cosine: float = 0.99
    overrides: Any = None  # converters.preprocess.Overrides
    input_node: str | None = None
    output_node: str | None = None
    workers: int | None = None
    save_io: str | None = None
    progress: Any = None  # callable(total, desc) -> context manager with .update(n)
    rules: Any = None  # host.judge.verdict.RuleFlags: --output-kind, --tolerance, --outputs, --postprocess
    on_calibration_data: bool = False  # check on the samples compile calibrated on too


# --- the model card's pieces ------------------------------------------------------------------------


def carded_reference(card: dict, kmodel_path: Path) -> Path | None:
    """The source model the card names, resolved against the card's own folder (older cards: as written)."""
    source = card.get("source") or {}
    path = source.get("path")
    if not path:
        return None
    p = Path(path)
    if source.get("path_base") == "card" and not p.is_absolute():
        return kmodel_path.parent / p
    return p


def resolve_reference(given: str | None, card: dict, kmodel_path: Path, *, no_reference: bool = False) -> Path | None:
    """`--reference`, else the card's; a carded reference that is missing fails the check (exit 1)."""
    if no_reference:
        return None
    if given:
        return Path(given)
    carded = carded_reference(card, kmodel_path)
    if carded is not None and not carded.exists():
        raise CheckFailed(f"the model card names the reference {carded}, which is missing: pass --reference MODEL, "
                          "or --no-reference to compare with the simulator only")
    return carded


def clamped_as_carded(card: dict, reference: list[np.ndarray]) -> list[np.ndarray]:
    """The reference outputs clipped as compile's --clamp-output clamped the model (the card's transforms):
    outside the clamp the kmodel is meant to differ."""
    from k210.converters.transforms.clamp import clip_as_recorded

    transforms = (card.get("quantisation") or {}).get("transforms") or {}
    return clip_as_recorded(transforms.get("clamped"), reference) if transforms.get("clamped") else reference


def carded_data(card: dict) -> tuple[str | None, str | None]:
    """(dataset, data path) the kmodel was calibrated on, for runs that name no data."""
    calibration = (card.get("quantisation") or {}).get("calibration") or {}
    return calibration.get("dataset"), calibration.get("data")


def preprocess_spec(card: dict, kmodel_input, overrides=None):
    """The card's preprocessing for this kmodel input (or the defaults), with the flags applied."""
    from k210.converters.preprocess import spec_for_model

    if not kmodel_input.shape or kmodel_input.dtype not in ("uint8", "float32"):
        raise BadInputError(f"the kmodel's input {kmodel_input.dtype}{kmodel_input.shape} is not a uint8 or "
                            "float32 tensor")
    carded = (card.get("preprocessing") or {}).get("spec")
    return spec_for_model(kmodel_input.shape, dtype=kmodel_input.dtype, card=carded, overrides=overrides)


# --- outputs -----------------------------------------------------------------------------------------


def pair_outputs(reference: list[np.ndarray], kmodel: list[np.ndarray]) -> list[int]:
    """For each kmodel output, the index of the reference output it is; one line if they cannot pair."""
    if len(reference) != len(kmodel):
        raise BadInputError(f"the kmodel has {len(kmodel)} output(s), the reference {len(reference)}: "
                            "is the reference the model this kmodel was compiled from?")
    sizes_ref = [int(np.prod(r.shape[1:])) for r in reference]
    sizes_k = [int(np.prod(k.shape[1:])) for k in kmodel]
    if sizes_ref == sizes_k:
        return list(range(len(kmodel)))
    if sorted(sizes_ref) == sorted(sizes_k) and len(set(sizes_k)) == len(sizes_k):
        return [sizes_ref.index(s) for s in sizes_k]  # the converter reordered them: pair by size
    detail = "; ".join(f"output {i}: kmodel {list(k.shape[1:])} vs reference {list(r.shape[1:])}"
                       for i, (k, r) in enumerate(zip(kmodel, reference)) if k[0].size != r[0].size)
    raise BadInputError(f"output shapes differ ({detail}): is the reference the model this kmodel was compiled from?")


def check_exclusions(card: dict, on_calibration_data: bool) -> frozenset[str]:
    """The calibration samples' hashes the card records: left out of checks unless asked for."""
    if on_calibration_data:
        return frozenset()
    calibration = (card.get("quantisation") or {}).get("calibration") or {}
    return frozenset(str(h) for h in calibration.get("sample_sha256") or [])


def check_data_summary(card: dict, inputs, on_calibration_data: bool) -> dict[str, Any]:
    """What the check ran on, against what the kmodel was calibrated on (for the report and its verdict line)."""
    calibration = (card.get("quantisation") or {}).get("calibration") or {}
    recorded = bool(calibration.get("sample_sha256"))
    return {"inputs": len(inputs), "calibration_samples_excluded": int(getattr(inputs, "excluded", 0)),
            "calibration_recorded": recorded, "on_calibration_data": on_calibration_data,
            "held_out": recorded and not on_calibration_data}


def check_data_phrase(summary: dict[str, Any] | None) -> str:
    """'on 80 held-out inputs' / 'ON CALIBRATION DATA' for verdict lines."""
    if not summary:
        return ""
    if summary["on_calibration_data"]:
        return f", on {summary['inputs']} inputs INCLUDING THE CALIBRATION SAMPLES (--on-calibration-data)"
    if summary["held_out"]:
        excluded = summary["calibration_samples_excluded"]
        return (f", on {summary['inputs']} held-out inputs"
                + (f" ({excluded} calibration samples left out)" if excluded else ""))
    return f", on {summary['inputs']} inputs (the card records no calibration samples)"


def save_io(path: str, inputs, outputs: dict[str, list[np.ndarray]]) -> None:
    """Inputs (as TF and as the kmodel take them), labels, and every output of every side, in one .npz."""
    from k210.core.fsutil import atomic_path

    if not str(path).endswith(".npz"):
        raise BadInputError(f"--save-io {path} should end in .npz")
    arrays: dict[str, np.ndarray] = {"inputs_reference": inputs.reference, "inputs_kmodel": inputs.kmodel}
    if inputs.labels is not None:
        arrays["labels"] = np.asarray(inputs.labels)
    for side, outs in outputs.items():
        for i, out in enumerate(outs):
            arrays[f"{side}_output_{i}"] = np.asarray(out)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


# --- k210 verify -------------------------------------------------------------------------------------


def verify(req: VerifyRequest) -> dict[str, Any]:
    from k210.converters.reference import load_reference
    from k210.converters.simulate import check_runnable, simulate
    from k210.converters.sources import detect
    from k210.core.fsutil import require_file

    from .inputdata import DataRequest, load_inputs
    from .judge.verdict import RuleFlags, judge_all, rule_set
    from .sidecars import read_card

    if req.limit is not None and req.limit < 1:
        raise BadInputError("--limit must be at least 1")
    for name, value in (("--min-agreement", req.min_agreement), ("--min-cosine", req.min_cosine)):
        if not 0 <= value <= 1:
            raise BadInputError(f"{name} must be between 0 and 1")
    if req.save_io and not str(req.save_io).endswith(".npz"):
        raise BadInputError(f"--save-io {req.save_io} should end in .npz")
    kmodel_path = require_file(req.kmodel, "kmodel")
    kmodel = kmodel_path.read_bytes()
    info = check_runnable(kmodel)  # v3/v4 and foreign files: one line before any data is read
    card = read_card(kmodel_path) or {}
    reference_path = resolve_reference(req.reference, card, kmodel_path)
    if reference_path is None:
        raise BadInputError("which reference? pass --reference MODEL (the model card names none)")
    source = detect(reference_path)
    spec = preprocess_spec(card, info.inputs[0], req.overrides)
    dataset, data = (req.dataset, req.data) if (req.dataset or req.data) else carded_data(card)
    exclude = check_exclusions(card, req.on_calibration_data)
    inputs = load_inputs(DataRequest(dataset, data, req.seed, "test", req.limit, exclude=exclude), spec,
                         info.inputs[0].shape, class_names=card.get("labels"))
    if not inputs.class_names and card.get("labels"):
        inputs.class_names = list(card["labels"])  # unlabelled data: the card still says which output has classes

    predict = load_reference(source, input_node=req.input_node, output_node=req.output_node)
    reference_out = predict(inputs.reference)
    if req.progress is not None:
        with req.progress(len(inputs), "simulating kmodel") as bar:
            kmodel_out = simulate(kmodel, inputs.kmodel, workers=req.workers, progress=bar.update)
    else:
        kmodel_out = simulate(kmodel, inputs.kmodel, workers=req.workers)
    order = pair_outputs(reference_out, kmodel_out)
    reference_out = [reference_out[j] for j in order]
    reference_out = clamped_as_carded(card, reference_out)
    flags = req.rules or RuleFlags(min_agreement=req.min_agreement, min_cosine=req.min_cosine)
    rules = rule_set(flags, card, reference_out, inputs.class_names or card.get("labels"))
    judgement = judge_all(reference_out, kmodel_out, rules, shapes=[list(k.shape[1:]) for k in kmodel_out],
                          labels=inputs.labels, class_names=inputs.class_names)
    if req.save_io:
        save_io(req.save_io, inputs, {"reference": reference_out, "kmodel": kmodel_out})
    primary = next((o for o in judgement.outputs if o["kind"] == "scores" and o["checked"]), judgement.outputs[0])
    report: dict[str, Any] = {k: v for k, v in primary.items()
                              if k not in ("output", "shape", "passed", "reasons", "limits", "note", "kind",
                                           "kind_from", "tolerance", "checked", "uninformative")}
    report.update({
        "kmodel": str(kmodel_path), "reference": str(source.path), "dataset": inputs.name, "source": inputs.source,
        "count": len(inputs), "labels": inputs.class_names if inputs.labels is not None else None,
        "preprocessing": spec.to_dict(), "outputs": judgement.outputs, "tasks": judgement.tasks,
        "primary_output": primary["output"], "rules": rules.to_dict(),
        "check_data": check_data_summary(card, inputs, req.on_calibration_data),
        "min_agreement": flags.min_agreement, "min_cosine": flags.min_cosine,
        "passed": judgement.passed, "reasons": judgement.reasons(),
    })
    return report
