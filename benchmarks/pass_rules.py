"""The pass rules on real models nobody here made (`python -m benchmarks.pass_rules`): docs/pass-rules.md's examples.

- values: MediaPipe's hand_recrop (a regressor in pixels of its 256x256 input), compiled uint8 on
  crops of scikit-image's photographs; `k210 verify` by default, then with a tolerance the user states;
- an uninformative reference: tf.keras.applications' MobileNetV2 (alpha 0.35, 96x96, 5 classes) with
  untrained BatchNorm, whose every class score is 0.2, compiled and verified the same way.
Check data are the held-out crops (compile calibrates on 20 % of the folder). Writes OUT/pass_rules.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from k210.host.cli import main as k210

CROPS_PER_PHOTO = 6


def run(*args: object) -> tuple[int, dict]:
    argv = [str(a) for a in args]
    print(f"$ k210 {' '.join(argv)}", flush=True)
    code = k210(argv)
    out = Path(argv[argv.index("--json-out") + 1]) if "--json-out" in argv else None
    result = json.loads(out.read_text())["result"] if out and out.exists() and argv[0] == "verify" else {}
    return code, result


def main(argv: list[str] | None = None) -> int:
    from k210.core.quiet import preload_tensorflow

    parser = argparse.ArgumentParser(prog="python -m benchmarks.pass_rules", description=__doc__)
    parser.add_argument("--out", default="out/bench/pass_rules")
    args = parser.parse_args(argv)
    preload_tensorflow()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from k210.models.photos import write_crops

    data = write_crops(out / "crops", CROPS_PER_PHOTO)
    results: dict = {}

    mediapipe = Path(importlib.util.find_spec("mediapipe").submodule_search_locations[0]) / "modules"
    hand = out / "hand_recrop.kmodel"
    run("compile", mediapipe / "holistic_landmark" / "hand_recrop.tflite", "--data", data, "-o", hand)
    code, default = run("verify", hand, "--json-out", out / "hand_default.json")
    worst = default["outputs"][0]["max_abs_error"]
    stated = f"0:max_abs={np.ceil(worst):.0f},nse=0.98"
    code_stated, loose = run("verify", hand, "--tolerance", stated, "--json-out", out / "hand_stated.json")
    o = default["outputs"][0]
    results["values"] = {"model": "hand_recrop", "exit": code, "count": default["count"], "cosine": o["cosine"],
                         "max_abs_error": worst, "output_step": o["output_step"], "nse": o["nse"],
                         "reasons": default["reasons"], "stated_tolerance": stated, "stated_exit": code_stated,
                         "stated_passed": loose["passed"]}

    import keras

    keras.utils.set_random_seed(0)
    mobilenet = out / "mobilenet_v2_untrained.keras"
    keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None, classes=5).save(mobilenet)
    flat = out / "mobilenet_v2_untrained.kmodel"
    run("compile", mobilenet, "--data", data, "--input-range", "-1,1", "-o", flat)
    code, constant = run("verify", flat, "--json-out", out / "mobilenet_default.json")
    results["uninformative"] = {"model": "MobileNetV2 (weights=None)", "exit": code, "count": constant["count"],
                                "agreement": constant["outputs"][0].get("agreement"), "reasons": constant["reasons"]}

    (out / "pass_rules.json").write_text(json.dumps(results, indent=2))
    v = results["values"]
    print(f"values, hand_recrop on {v['count']} held-out crops: exit {v['exit']}, cosine {v['cosine']:.4f}, "
          f"max abs {v['max_abs_error']:.1f} px = {v['max_abs_error'] / v['output_step']:.1f} output steps "
          f"(step {v['output_step']:.3f} px), NSE {v['nse']:.4f}")
    print(f"  with --tolerance {v['stated_tolerance']}: exit {v['stated_exit']}")
    u = results["uninformative"]
    print(f"uninformative, {u['model']} on {u['count']} held-out crops: exit {u['exit']}, agreement "
          f"{u['agreement']}, why: {u['reasons'][0] if u['reasons'] else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
