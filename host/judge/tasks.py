"""Decoded tasks: a detector judged by its boxes after decoding and NMS, a segmenter by its mask.

The model card's `postprocess` (or `--postprocess`) names the task and the outputs it reads:
  {"task": "ssd", "boxes_output": 0, "scores_output": 1, "input_size": [128, 128],
   "strides": [8, 16, 16, 16], "anchors_per_layer": 2, "score_threshold": 0.75, "nms_iou": 0.3}
  {"task": "yolo2", "output": 0, "anchors": [w0, h0, w1, h1, ...], "classes": 20,
   "score_threshold": 0.5, "nms_iou": 0.45}
  {"task": "mask", "output": 0, "threshold": 0.5}
or a preset name (PRESETS). Pass rules (defaults, settable under "pass"):
  detection: matched-box recall >= 0.9 and precision >= 0.9 at IoU 0.5 (the reference's boxes are
  the truth), and mean best-box IoU >= 0.8 over the inputs where the reference finds something;
  mask: mean IoU of the masks >= 0.9.
A reference that finds nothing on any input (or gives the same mask everywhere) is uninformative.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from k210.core.errors import BadInputError
from k210.models import decoders

PRESETS: dict[str, dict[str, Any]] = {
    # MediaPipe's short-range face detector (face_detection_front / _short_range): k210.models.face_detector
    "mediapipe-face-front": {"task": "ssd", "boxes_output": 0, "scores_output": 1, "input_size": [128, 128],
                             "strides": [8, 16, 16, 16], "anchors_per_layer": 2, "score_threshold": 0.75,
                             "nms_iou": 0.3},
    # aXeleRate's K210 YOLOv2 detectors: 7x7 grid at 224x224, its default anchors (grid cells), one class
    "axelerate-yolo2": {"task": "yolo2", "output": 0, "classes": 1, "score_threshold": 0.5, "nms_iou": 0.45,
                        "anchors": [0.57273, 0.677385, 1.87446, 2.06253, 3.33843, 5.47434, 7.88282, 3.52778,
                                    9.77052, 9.16828]},
    "mask": {"task": "mask", "output": 0, "threshold": 0.5},
}
TASKS = ("ssd", "yolo2", "mask")
DEFAULT_PASS = {"min_recall": 0.9, "min_precision": 0.9, "min_iou": 0.8, "min_mask_iou": 0.9, "match_iou": 0.5}


def load_postprocess(text: str | None) -> dict[str, Any] | None:
    """`--postprocess PRESET | FILE.json | {json}` -> a checked config (None: no decoded task)."""
    if text is None:
        return None
    if text in PRESETS:
        return check_postprocess(dict(PRESETS[text]))
    if text.lstrip().startswith("{"):
        source = text
    else:
        path = Path(text)
        if not path.is_file():
            raise BadInputError(f"--postprocess {text}: not a preset ({', '.join(PRESETS)}), a JSON file or JSON")
        source = path.read_text(encoding="utf-8", errors="replace")
    try:
        config = json.loads(source, parse_constant=_no_constant)
    except ValueError as exc:
        raise BadInputError(f"--postprocess {text[:60]}: not JSON ({exc})") from None
    return check_postprocess(config)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def check_postprocess(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict) or config.get("task") not in TASKS:
        raise BadInputError(f"postprocess: expected an object with \"task\" one of {', '.join(TASKS)}")
    if config.get("preset") in PRESETS:
        config = {**PRESETS[config["preset"]], **config}
    for key in ("boxes_output", "scores_output", "output", "classes"):
        if key in config and (not isinstance(config[key], int) or config[key] < 0):
            raise BadInputError(f"postprocess: {key} must be a whole number >= 0")
    if config["task"] == "ssd" and not all(k in config for k in ("boxes_output", "scores_output", "input_size",
                                                                 "strides")):
        raise BadInputError("postprocess ssd needs boxes_output, scores_output, input_size and strides")
    if config["task"] == "yolo2" and not all(k in config for k in ("output", "anchors", "classes")):
        raise BadInputError("postprocess yolo2 needs output, anchors and classes")
    return config


def task_outputs(config: dict[str, Any] | None) -> set[int]:
    if not config:
        return set()
    if config["task"] == "ssd":
        return {config["boxes_output"], config["scores_output"]}
    return {config.get("output", 0)}


def _detections(config: dict[str, Any], outputs: list[np.ndarray], shapes: list[list[int]]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: boxes [M, 4] and scores [M] after threshold and NMS."""
    threshold = float(config.get("score_threshold", 0.5))
    overlap = float(config.get("nms_iou", 0.3))
    if config["task"] == "ssd":
        width, height = config["input_size"]
        anchors = decoders.ssd_anchor_centres(width, height, config["strides"], config.get("anchors_per_layer", 2))
        boxes, scores = decoders.decode_ssd(outputs[config["boxes_output"]], outputs[config["scores_output"]],
                                            anchors, (width, height))
    else:
        k = config["output"]
        grid = np.asarray(outputs[k]).reshape(len(outputs[k]), *shapes[k])
        boxes, scores, _ = decoders.decode_yolo2(grid, config["anchors"], config["classes"],
                                                 config.get("layout", "NHWC"))
    return [(boxes[i][keep], scores[i][keep])
            for i in range(len(boxes)) for keep in [decoders.nms(boxes[i], scores[i], threshold, overlap)]]


def judge_task(config: dict[str, Any], reference: list[np.ndarray], candidate: list[np.ndarray],
               shapes: list[list[int]]) -> dict[str, Any]:
    """The decoded task's figures and verdict, `candidate` against `reference` (lists of [N, ...] per output)."""
    limits = {**DEFAULT_PASS, **(config.get("pass") or {})}
    for k in task_outputs(config):
        if k >= len(reference):
            raise BadInputError(f"postprocess reads output {k}, the model has {len(reference)}")
    if config["task"] == "mask":
        return _judge_mask(config, reference, candidate, shapes, limits)
    return _judge_boxes(config, reference, candidate, shapes, limits)


def _judge_boxes(config, reference, candidate, shapes, limits) -> dict[str, Any]:
    ref, cand = _detections(config, reference, shapes), _detections(config, candidate, shapes)
    matched = ref_total = cand_total = 0
    best: list[float] = []
    score_errors: list[float] = []
    for (rb, rs), (cb, cs) in zip(ref, cand):
        ref_total += len(rb)
        cand_total += len(cb)
        if len(rb):
            best.append(float(decoders.iou(rb[0], cb).max()) if len(cb) else 0.0)
        taken: set[int] = set()
        for j in range(len(rb)):  # greedy, best reference box first (NMS order)
            if not len(cb):
                break
            overlaps = decoders.iou(rb[j], cb)
            overlaps[list(taken)] = -1
            k = int(overlaps.argmax())
            if overlaps[k] >= limits["match_iou"]:
                taken.add(k)
                matched += 1
                score_errors.append(abs(float(rs[j]) - float(cs[k])))
    recall = matched / ref_total if ref_total else 0.0
    precision = matched / cand_total if cand_total else (1.0 if ref_total == 0 else 0.0)
    mean_best = float(np.mean(best)) if best else 0.0
    figures: dict[str, Any] = {
        "task": "detection", "decoder": config["task"], "outputs": sorted(task_outputs(config)),
        "images": len(ref), "images_with_reference_boxes": len(best), "reference_boxes": ref_total,
        "candidate_boxes": cand_total, "matched_boxes": matched, "recall": recall, "precision": precision,
        "best_box_iou": mean_best, "best_box_iou_min": float(min(best)) if best else 0.0,
        "score_error": float(np.mean(score_errors)) if score_errors else 0.0,
        "best_box_iou_per_image": [round(v, 4) for v in best],
    }
    reasons = []
    if ref_total == 0:
        reasons.append("the reference model finds nothing on these inputs: its boxes cannot tell a right "
                       "candidate from a wrong one")
    else:
        for name, value, key in (("recall", recall, "min_recall"), ("precision", precision, "min_precision"),
                                 ("mean best-box IoU", mean_best, "min_iou")):
            if value < limits[key]:
                reasons.append(f"{name} {value:.3f} is below {limits[key]:g}")
    figures.update(limits={k: limits[k] for k in ("min_recall", "min_precision", "min_iou", "match_iou")},
                   passed=not reasons, reasons=reasons, uninformative=ref_total == 0)
    return figures


def _judge_mask(config, reference, candidate, shapes, limits) -> dict[str, Any]:
    k = config.get("output", 0)
    threshold = float(config.get("threshold", 0.5))
    layout = config.get("layout", "NHWC")
    ref = decoders.mask_of(np.asarray(reference[k]).reshape(len(reference[k]), *shapes[k][-3:]), threshold, layout)
    cand = decoders.mask_of(np.asarray(candidate[k]).reshape(len(candidate[k]), *shapes[k][-3:]), threshold, layout)
    ious = []
    for r, c in zip(ref, cand):
        classes = np.union1d(np.unique(r), np.unique(c))
        per = [((r == v) & (c == v)).sum() / max(1, ((r == v) | (c == v)).sum()) for v in classes if v != 0]
        ious.append(float(np.mean(per)) if per else 1.0)
    mean_iou = float(np.mean(ious)) if ious else 0.0
    same_everywhere = len(ref) >= 2 and all(np.array_equal(ref[0], r) for r in ref[1:])
    reasons = []
    if same_everywhere:
        reasons.append("the reference model's mask is the same on every input: it cannot tell a right candidate "
                       "from a wrong one")
    elif mean_iou < limits["min_mask_iou"]:
        reasons.append(f"mean mask IoU {mean_iou:.3f} is below {limits['min_mask_iou']:g}")
    return {"task": "mask", "decoder": "mask", "outputs": [k], "images": len(ref), "mask_iou": mean_iou,
            "mask_iou_min": float(min(ious)) if ious else 0.0, "limits": {"min_mask_iou": limits["min_mask_iou"]},
            "passed": not reasons, "reasons": reasons, "uninformative": same_everywhere}
