"""What still loses in BlazeFace back once its outputs are clamped (`python -m benchmarks.blazeface_heads`).

explain_dfq's split (8 photographs calibrate, the other 18 check), the build `--equalize --absorb-bias
--clamp-output classificators=-16,16 --clamp-output regressors=-256,256`. Prints, per score head, the
kmodel's uint8 step and its logits' error against TFLite's (clipped alike); per head, what rounding the
head's input alone to one uint8 step (range from the calibration photographs) does to the float head's
logits (numpy, no nncase), before and after equalisation; and the peaks along the residual stream that
feeds the heads (per-channel spread beside, from the calibration photographs). Two to five minutes.
With --explain, then `k210 explain`'s per-layer table of that build (no fixes; four probe photographs;
five more minutes).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np


def head_rounding(model: bytes, inputs_cal: np.ndarray, inputs_chk: np.ndarray) -> list[str]:
    """Each classificator head: its input rounded to one uint8 step alone, the float head applied."""
    from k210.converters.transforms import graph as g
    from k210.converters.transforms.measure import run_each

    m = g.Model(model)
    lines = []
    for op in sorted((o for o in m.weighted.values() if o.name.startswith("classificator")), key=lambda o: o.name):
        w = m.constant(op.weights)[:, 0, 0, :]
        cal = np.concatenate([v[op.x].reshape(-1, w.shape[1]) for v in run_each(model, inputs_cal, [op.x])])
        chk = np.concatenate([v[op.x].reshape(-1, w.shape[1]) for v in run_each(model, inputs_chk, [op.x])])
        step = float(cal.max()) / 255
        rounded = np.clip(np.round(chk / step), 0, 255) * step
        error = (rounded - chk) @ w.T
        lines.append(f"{op.name}: input {m.tensor_name(op.x)} 0..{cal.max():.1f} (99.9 % below "
                     f"{np.percentile(cal, 99.9):.1f}), step {step:.3f}; its rounding alone moves the logits by "
                     f"std {error.std():.2f}")
    return lines


def per_layer(case: dict, model: bytes) -> str:
    """explain's per-layer evidence of the transformed model's uint8 build (no fixes)."""
    from benchmarks.explain_face import face_agreement
    from k210.host.explaining import ExplainData, ExplainOptions, explain, render

    spec = case["spec"]
    data = ExplainData(spec.to_kmodel(case["calibration"]), spec.to_float(case["calibration"]),
                       spec.to_kmodel(case["checks"]), spec.to_float(case["checks"]), name="18 held-out photographs")
    report = explain(model, case["shape"], data, ExplainOptions(
        spec=case["build"], probes=48, probe_images=4, fixes=False, try_float=False, agreement=face_agreement,
        agreement_name="face/no-face agreement"))
    return render(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blazeface_heads", description=__doc__)
    parser.add_argument("--explain", action="store_true", help="also explain's per-layer table of the build")
    args = parser.parse_args(argv)
    from benchmarks.explain_dfq import FACE_CLAMPS, face_case
    from k210.converters import quant_explain as qx
    from k210.converters.transforms import TransformOptions, apply
    from k210.converters.transforms import graph as g
    from k210.converters.transforms.clamp import parse_clamp
    from k210.converters.transforms.measure import channel_ranges, outputs

    case = face_case()
    spec = case["spec"]
    cal_f, chk_f = spec.to_float(case["calibration"]), spec.to_float(case["checks"])
    clamps = tuple(parse_clamp(c) for c in FACE_CLAMPS)
    equalised = apply(case["tflite"], TransformOptions(equalize=True, absorb_bias=True), cal_f).tflite
    clamped = apply(case["tflite"], TransformOptions(equalize=True, absorb_bias=True, clamps=clamps), cal_f).tflite
    built = qx.build(clamped, replace(case["build"]), input_shape=case["shape"],
                     calibration=spec.to_kmodel(case["calibration"]), inputs=spec.to_kmodel(case["checks"]))
    by_size = lambda arrays: sorted(arrays, key=lambda a: -np.asarray(a[0]).size)  # noqa: E731  [boxes, scores]
    reference = by_size(outputs(case["tflite"], chk_f))
    got = [np.asarray(o).reshape(r.shape) for o, r in zip(by_size(built.outputs), reference)]
    ref_scores = np.clip(reference[1].reshape(len(chk_f), -1), -16, 16)
    scores = got[1].reshape(len(chk_f), -1)
    print("kmodel score logits against TFLite's (both clipped to -16..16), --equalize --absorb-bias --clamp-output:")
    for name, part in (("16x16 head (anchors 0-511)", slice(0, 512)), ("8x8 head (anchors 512-895)", slice(512, 896))):
        levels = np.unique(scores[:, part])
        error = (scores - ref_scores)[:, part]
        print(f"  {name}: uint8 step {np.diff(levels).min():.3f}, error mean {error.mean():.2f} std {error.std():.2f}")
    for label, model in (("float model", case["tflite"]), ("after --equalize --absorb-bias", equalised)):
        print(f"head inputs rounded to one uint8 step, {label}:")
        for line in head_rounding(model, cal_f, chk_f):
            print("  " + line)
    m = g.Model(case["tflite"])
    stream = [i for i in range(len(m.graph.tensors)) if m.tensor_name(i).startswith("add_")]
    ranges = channel_ranges(case["tflite"], cal_f, stream)
    print("residual ADDs (float model, calibration photographs): peak, per-channel spread")
    for t in sorted(ranges, key=lambda t: int(m.tensor_name(t).split("_")[-1])):
        print(f"  {m.tensor_name(t)}: {ranges[t].high.max():.1f}, spread {ranges[t].spread():.1f}")
    if args.explain:
        print(per_layer(case, clamped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
