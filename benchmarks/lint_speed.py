"""How long `k210 lint model.tflite` takes in a fresh process (`python -m benchmarks.lint_speed`).

The issue's bar: well under 5 s for a TFLite file, so lint fits an editor or a pre-commit hook. The
seed models are converted to TFLite first (that part uses TensorFlow and is not timed); then each
file is linted in fresh `k210 lint` processes, as a hook would run it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SEEDS = {"xo_mlp": 2, "lenet5": 10, "lenet_kpu": 10}
PROBE = (
    "import sys; from k210.host.cli import main; code = main(['lint', sys.argv[1]]);"
    "sys.stderr.write('TF_IMPORTED=%s\\n' % ('tensorflow' in sys.modules)); sys.exit(code)"
)


def make_tflite_files(out: Path) -> dict[str, Path]:
    from k210.converters.to_tflite import keras_to_tflite
    from k210.core.quiet import preload_tensorflow
    from k210.models.zoo import get_model_def

    preload_tensorflow()
    files = {}
    for name, classes in SEEDS.items():
        path = out / f"{name}.tflite"
        if not path.exists():
            path.write_bytes(keras_to_tflite(get_model_def(name).build(classes)).data)
        files[name] = path
    return files


def time_fresh_lint(path: Path, runs: int) -> dict:
    k210 = Path(sys.executable).with_name("k210")
    command = [str(k210)] if k210.exists() else [sys.executable, "-m", "k210.host.cli"]
    cli = [*command, "lint", str(path)]
    walls, exit_code = [], None
    for _ in range(runs):
        started = time.perf_counter()
        exit_code = subprocess.run(cli, capture_output=True).returncode
        walls.append(time.perf_counter() - started)
    probe = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True)
    return {
        "file_bytes": path.stat().st_size,
        "exit_code": exit_code,
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
        "runs": runs,
        "imports_tensorflow": "TF_IMPORTED=True" in probe.stderr,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lint_speed", description=__doc__)
    parser.add_argument("--out", default="out/bench/lint_speed")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("tflite", nargs="*", help="TFLite files to time (default: the seed models)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {Path(p).stem: Path(p) for p in args.tflite} or make_tflite_files(out)
    results = {name: time_fresh_lint(path, args.runs) for name, path in files.items()}
    print(f"`k210 lint FILE.tflite` in a fresh process, {args.runs} runs each (bar: well under 5 s)")
    print(f"{'model':<12} {'bytes':>9} {'median s':>9} {'min s':>7} {'max s':>7}  exit  TF imported")
    for name, r in results.items():
        print(f"{name:<12} {r['file_bytes']:>9} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f}  "
              f"{r['exit_code']:>4}  {r['imports_tensorflow']}")
    (out / "lint_speed.json").write_text(json.dumps(results, indent=2))
    slow = [n for n, r in results.items() if r["median_s"] >= 5.0 or r["imports_tensorflow"]]
    if slow:
        print(f"too slow or importing TensorFlow: {', '.join(slow)}", file=sys.stderr)
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
