"""What a refusal costs: `k210 compile` on a model too big for the K210 against `k210 lint --confirm`
on the same file, each in a fresh process, in one run (`python -m benchmarks.compile_refusal`).

The model is MediaPipe's palm_detection_lite.tflite from the `mediapipe` wheel (lint: 7.54 MiB,
nncase's TOTAL: 7.54 MiB). compile is timed with a folder of photographs (k210.models.photos, copied
into one folder) and with `--dataset random --calib 8`. Issue 28's bar: a refusal costs at most 1.2x
`lint --confirm`, whatever the calibration data; the exit code is 1 when a ratio is above it.
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


def _timed(args: list[str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([*_k210(), *args], capture_output=True, text=True)
    last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
    return {"command": "k210 " + " ".join(args), "seconds": round(time.perf_counter() - started, 1),
            "exit": proc.returncode, "said": last}


def photo_folder(out: Path) -> Path:
    from k210.models.photos import photo_files

    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for path in photo_files():
        if not (folder / path.name).exists():
            shutil.copyfile(path, folder / path.name)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_refusal", description=__doc__)
    parser.add_argument("--out", default="out/bench/compile_refusal")
    parser.add_argument("model", nargs="?",
                        help="a model too big for the K210 (default: MediaPipe's palm_detection_lite)")
    args = parser.parse_args(argv)
    from benchmarks.lint_vs_nncase import mediapipe_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else mediapipe_file("palm_detection/palm_detection_lite.tflite")
    kmodel = str(out / "refused.kmodel")
    confirm = _timed(["lint", "--confirm", str(model)])
    runs = {
        "photographs": _timed(["compile", str(model), "--data", str(photo_folder(out)), "-o", kmodel]),
        "random": _timed(["compile", str(model), "--dataset", "random", "--calib", "8", "-o", kmodel]),
    }
    print(f"{model.name}: a refusal by `k210 compile` against `k210 lint --confirm` (fresh processes, bar {BAR}x)")
    print(f"  lint --confirm: {confirm['seconds']:.1f} s, exit {confirm['exit']}")
    failed = confirm["exit"] != 1
    for name, run in runs.items():
        run["ratio"] = round(run["seconds"] / confirm["seconds"], 2)
        refused = run["exit"] == 1 and not Path(kmodel).exists()
        failed |= not refused or run["ratio"] > BAR
        print(f"  compile, {name}: {run['seconds']:.1f} s, exit {run['exit']}, {run['ratio']:.2f}x lint --confirm")
        print(f"    {run['said']}")
    (out / "compile_refusal.json").write_text(json.dumps({"model": str(model), "confirm": confirm, **runs}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
