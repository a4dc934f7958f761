"""What a refusal costs: `k210 compile` on a model too big for the K210 against `k210 lint --confirm`
on the same file, each in a fresh process, in one run (`python -m benchmarks.compile_refusal`).

Two models: MediaPipe's palm_detection_lite.tflite from the `mediapipe` wheel (lint: 7.54 MiB,
nncase's TOTAL: 7.54 MiB; beyond the line by more than lint's error, so lint refuses alone) and a
Dense model near the line (lint 6.11 MiB: nncase decides on random samples). compile is timed with
a folder of photographs (k210.models.photos, copied into one folder) and with `--dataset random
--calib 8`. Issue 28's bar: a refusal costs at most 1.2x `lint --confirm`, whatever the calibration
data; the exit code is 1 when a ratio is above it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

BAR = 1.2


def _k210() -> list[str]:
    k210 = Path(sys.executable).with_name("k210")
    return [str(k210)] if k210.exists() else [sys.executable, "-m", "k210.host.cli"]


def _timed(args: list[str], runs: int) -> dict:
    """The fastest of `runs` fresh processes: the run least slowed by whatever else shares the machine."""
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run([*_k210(), *args], capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
    last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
    return {"command": "k210 " + " ".join(args), "seconds": round(min(walls), 1), "all_seconds": walls,
            "exit": proc.returncode, "said": last}


def photo_folder(out: Path) -> Path:
    from k210.models.photos import photo_files

    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for path in photo_files():
        if not (folder / path.name).exists():
            shutil.copyfile(path, folder / path.name)
    return folder


def near_the_line(out: Path) -> Path:
    """A 32x32x1 -> Flatten -> Dense(1560) model: lint estimates 6.11 MiB, within its error of the 6 MiB,
    so compile asks nncase (its TOTAL: 6.27 MiB). Built with TensorFlow, not timed."""
    path = out / "dense_1560.tflite"
    if not path.exists():
        import keras

        from k210.converters.to_tflite import keras_to_tflite
        from k210.core.quiet import preload_tensorflow

        preload_tensorflow()
        model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Flatten(), keras.layers.Dense(1560)])
        path.write_bytes(keras_to_tflite(model).data)
    return path


def measure(model: Path, photos: Path, kmodel: str, runs_each: int) -> tuple[dict, dict]:
    confirm = _timed(["lint", "--confirm", str(model)], runs_each)
    runs = {
        "photographs": _timed(["compile", str(model), "--data", str(photos), "-o", kmodel], runs_each),
        "random": _timed(["compile", str(model), "--dataset", "random", "--calib", "8", "-o", kmodel], runs_each),
    }
    for run in runs.values():
        run["ratio"] = round(run["seconds"] / confirm["seconds"], 2)
    return confirm, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_refusal", description=__doc__)
    parser.add_argument("--out", default="out/bench/compile_refusal")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per command; the fastest counts")
    args = parser.parse_args(argv)
    from benchmarks.lint_vs_nncase import mediapipe_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {"beyond the line": mediapipe_file("palm_detection/palm_detection_lite.tflite"),
              "near the line": near_the_line(out)}
    kmodel = out / "refused.kmodel"
    photos = photo_folder(out)
    failed, results = False, {}
    print(f"a refusal by `k210 compile` against `k210 lint --confirm` on the same file (the fastest of {args.runs} "
          f"fresh processes each, bar {BAR}x)")
    for label, model in models.items():
        confirm, runs = measure(model, photos, str(kmodel), args.runs)
        results[label] = {"model": str(model), "confirm": confirm, **runs}
        print(f"{model.name} ({label}): lint --confirm {confirm['seconds']:.1f} s, exit {confirm['exit']}")
        failed |= confirm["exit"] != 1
        for name, run in runs.items():
            failed |= run["exit"] != 1 or kmodel.exists() or run["ratio"] > BAR
            print(f"  compile, {name}: {run['seconds']:.1f} s, exit {run['exit']}, {run['ratio']:.2f}x lint --confirm")
            print(f"    {run['said']}")
    (out / "compile_refusal.json").write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
