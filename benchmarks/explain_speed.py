"""How long `k210 explain` makes a user wait, against the cores it has (`python -m benchmarks.explain_speed`).

Issue 28's bars: wall time at most 1.3x (the sum of its build times / the cores), MobileNetV2 (alpha
0.35, 96x96, as explain `--limit 10 --calib 16`: 16 calibration crops, 64 for the "more samples" fix,
10 held-out check crops) within 90 s, BlazeFace back (`--model face`, as benchmarks.explain_face:
8 photographs calibrate, the others check, face/no-face agreement) within 20 minutes. The models and
data are benchmarks.explain_dfq's. `--serial` also runs the same explanation one build at a time
with no fix cut, and says whether it chose the same best fix and build with the same figures.

A build's time is its nncase child process (compile and simulator); the wall time is the whole
explanation (TFLite references and ranges, transforms, scoring included). On a machine other work
shares, both grow: the figures are upper bounds. The builds' CPU time is printed too: wall / (CPU /
cores) is what the same run gives against the cores it did not get. Exit 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RATIO_BAR = 1.3
WALL_BARS = {"mobilenet": 90.0, "face": 20 * 60.0}


def mobilenet(out: Path) -> tuple[dict, dict]:
    from benchmarks.explain_dfq import mobilenet_case

    case = mobilenet_case(out)
    spec = case["spec"]
    calibration, more, checks = case["calibration"][:16], case["calibration"][:64], case["checks"][:10]
    return case, {"data": _data(spec, calibration, more, checks, "10 held-out photograph crops"), "options": {}}


def face(out: Path) -> tuple[dict, dict]:
    from benchmarks.explain_dfq import face_case
    from benchmarks.explain_face import face_agreement

    case = face_case()
    data = _data(case["spec"], case["calibration"], case["more"], case["checks"], case["data"])
    return case, {"data": data, "options": {"probe_images": 4, "try_float": False, "agreement": face_agreement,
                                            "agreement_name": "face/no-face agreement"}}


def _data(spec, calibration, more, checks, name: str):
    from k210.host.explaining import ExplainData

    return ExplainData(spec.to_kmodel(calibration), spec.to_float(calibration), spec.to_kmodel(checks),
                       spec.to_float(checks), more_calibration=(spec.to_kmodel(more), spec.to_float(more)),
                       name=name)


def timed_explain(case: dict, setup: dict, workers: int | None, cut: bool, say) -> dict:
    from k210.host.explaining import ExplainOptions, explain

    options = ExplainOptions(spec=case["build"], workers=workers, cut=cut, compile_base=case["compile_base"],
                             progress=say, **setup["options"])
    started = time.perf_counter()
    report = explain(case["tflite"], case["shape"], setup["data"], options)
    report["timing"]["measured_wall_seconds"] = round(time.perf_counter() - started, 1)
    return report


def _choice(report: dict) -> dict:
    keys = ("name", "agreement", "cosine")
    return {which: {k: report[which][k] for k in keys} for which in ("best_fix", "best_build")}


def main(argv: list[str] | None = None) -> int:
    from k210.host.explain_builds import default_workers

    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain_speed", description=__doc__)
    parser.add_argument("--out", default="out/bench/explain_speed")
    parser.add_argument("--model", choices=("mobilenet", "face", "all"), default="mobilenet",
                        help="mobilenet (default; minutes), face (BlazeFace back: tens of minutes) or all")
    parser.add_argument("--workers", type=int, default=None, help="builds at once (default: the cores)")
    parser.add_argument("--serial", action="store_true",
                        help="also run it one build at a time, no fix cut, and compare the choice")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {message}", file=sys.stderr, flush=True)

    cores = default_workers()
    names = ["mobilenet", "face"] if args.model == "all" else [args.model]
    results, missed = [], []
    for name in names:
        case, setup = (mobilenet if name == "mobilenet" else face)(out)
        report = timed_explain(case, setup, args.workers, True, say)
        timing = report["timing"]
        row = {"model": case["name"], "cores": cores, "workers": timing["workers"],
               "wall_seconds": timing["measured_wall_seconds"], "build_seconds": timing["build_seconds"],
               "ratio": round(timing["measured_wall_seconds"] / (timing["build_seconds"] / cores), 2),
               "build_cpu_seconds": timing["build_cpu_seconds"],
               "cpu_ratio": round(timing["measured_wall_seconds"] / (timing["build_cpu_seconds"] / cores), 2),
               "builds": timing["builds"], "cut": [f["name"] for f in report["fixes_cut"]], **_choice(report)}
        if args.serial:
            serial = timed_explain(case, setup, 1, False, say)
            row["serial_wall_seconds"] = serial["timing"]["measured_wall_seconds"]
            row["serial_build_seconds"] = serial["timing"]["build_seconds"]
            row["serial_build_cpu_seconds"] = serial["timing"]["build_cpu_seconds"]
            row["same_choice_as_serial"] = _choice(serial) == _choice(report)
        results.append(row)
        (out / "explain_speed.json").write_text(json.dumps(results, indent=1))
        slowest = max(timing["builds"], key=lambda b: b["seconds"])
        print(f"{row['model']}: wall {row['wall_seconds']:.1f} s, builds {row['build_seconds']:.1f} s in all on "
              f"{cores} cores ({row['workers']} at once): wall / (builds / cores) = {row['ratio']:.2f} "
              f"(bar {RATIO_BAR}); wall bar {WALL_BARS[name]:.0f} s; longest build {slowest['name']} "
              f"{slowest['seconds']:.1f} s; {len(row['cut'])} fix(es) cut; best build {row['best_build']['name']}")
        print(f"  the builds' CPU time {row['build_cpu_seconds']:.1f} s: wall / (CPU / cores) = {row['cpu_ratio']:.2f} "
              "(above the ratio by what other work on the machine took from the builds)")
        if args.serial:
            print(f"  serial, no cut: wall {row['serial_wall_seconds']:.1f} s, builds {row['serial_build_seconds']:.1f}"
                  f" s (CPU {row['serial_build_cpu_seconds']:.1f} s); same best fix and best build, same figures: "
                  f"{row['same_choice_as_serial']}")
            missed += [f"{name}: not the serial choice"] if not row["same_choice_as_serial"] else []
        missed += [f"{name}: ratio {row['ratio']}"] if row["ratio"] > RATIO_BAR else []
        missed += [f"{name}: wall {row['wall_seconds']:.0f} s"] if row["wall_seconds"] > WALL_BARS[name] else []
    if missed:
        print(f"missed: {'; '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
