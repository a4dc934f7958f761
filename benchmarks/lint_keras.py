"""`k210 lint model.keras` without TensorFlow (`python -m benchmarks.lint_keras`): how long it takes in a
fresh process, and whether its figures are the TensorFlow path's, on every Keras model of the zoo and of
benchmarks/lint_vs_nncase.

Each model is built and saved as .keras (TensorFlow, not timed), linted from its config and weights
(host/lint/keras_config.py) in fresh `k210 lint` processes, and linted again through TensorFlow's
converter in this process: verdict, every op's placement, the memory figures and the layer findings
must be equal. Issue 28's bar: at most 1.5 s a file; the exit code is 1 when one is slower, imports
TensorFlow or differs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BAR_S = 1.5
PROBE = ("import sys; from k210.host.cli import main; main(['lint', sys.argv[1]]);"
         "sys.stderr.write('TF_IMPORTED=%s\\n' % ('tensorflow' in sys.modules))")


def model_makers() -> dict:
    from benchmarks import lint_vs_nncase as bench
    from k210.models.zoo import ZOO

    makers = {f"zoo_{name}": (lambda d=d: d.build(10)) for name, d in ZOO.items()}
    makers |= {
        "flatten_mlp": bench.flatten_mlp, "conv3x3x32_maxpool_240x320": lambda: bench.conv_on_240x320(32, True),
        "conv3x3x32_240x320": lambda: bench.conv_on_240x320(32, False),
        "conv3x3x16_240x320": lambda: bench.conv_on_240x320(16, False), "mlperf_ds_cnn_kws": bench.ds_cnn_kws,
        "mlperf_resnet8": bench.resnet8, "mlperf_fc_autoencoder": bench.fc_autoencoder,
        "mlperf_vww_mobilenet_0.25_96": bench.vww_mobilenet,
    }
    for alpha, size in ((0.25, 128), (0.5, 160), (0.75, 224), (1.0, 128), (1.0, 224)):
        makers[f"mobilenet_{alpha}_{size}"] = lambda a=alpha, s=size: bench.mobilenet(a, s)
    for alpha, size in ((0.35, 128), (0.5, 160), (1.0, 224)):
        makers[f"mobilenet_v2_{alpha}_{size}"] = lambda a=alpha, s=size: bench.mobilenet_v2(a, s)
    return makers


def figures(report) -> dict:
    """What both paths must agree on."""
    return {
        "ok": report.ok,
        "ops": [(o.op, o.placement.value, o.lowered_convs) for o in report.ops],
        "memory": {k: v for k, v in report.memory.items() if isinstance(v, (int, float))},
        "findings": [(f.kind, f.verdict, f.reason) for f in report.findings],
        "problems": len(report.problems), "estimate_problems": len(report.estimate_problems),
    }


def differences(path: Path) -> list[str]:
    """The fields where the config path and the TensorFlow path differ (empty: the same)."""
    from k210.converters.to_tflite import load_keras
    from k210.host.lint.keras_config import lint_keras_archive
    from k210.host.lint.sources import lint_model

    by_tf = figures(lint_model(load_keras(path), name=str(path), format="keras"))
    by_config = figures(lint_keras_archive(path, compiler="nncase1.9", quant="uint8", shown=str(path)))
    return [key for key in by_tf if by_tf[key] != by_config[key]]


def time_fresh(path: Path, runs: int) -> dict:
    k210 = Path(sys.executable).with_name("k210")
    command = [str(k210)] if k210.exists() else [sys.executable, "-m", "k210.host.cli"]
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([*command, "lint", str(path)], capture_output=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    probe = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True)
    return {"median_s": round(statistics.median(walls), 2), "min_s": round(min(walls), 2),
            "cpu_s": round(statistics.median(cpus), 2), "imports_tensorflow": "TF_IMPORTED=True" in probe.stderr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lint_keras", description=__doc__)
    parser.add_argument("--out", default="out/bench/lint_keras")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="model names (default: all)")
    args = parser.parse_args(argv)
    from k210.core.quiet import preload_tensorflow

    preload_tensorflow()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, make in model_makers().items():
        if args.only and name not in args.only:
            continue
        path = out / f"{name}.keras"
        if not path.exists():
            make().save(path)
        rows[name] = time_fresh(path, args.runs) | {"differs": differences(path)}
    print(f"`k210 lint MODEL.keras` in fresh processes, {args.runs} runs (bar {BAR_S} s for the fastest, the run "
          "least slowed by other processes on a shared machine; CPU s: the process's own), against the TensorFlow "
          "path's figures")
    print(f"{'model':<32} {'min s':>6} {'/ bar':>6} {'median s':>8} {'CPU s':>6}  TF imported  differs")
    failed = []
    for name, row in rows.items():
        imported = str(row["imports_tensorflow"])
        print(f"{name:<32} {row['min_s']:>6.2f} {row['min_s'] / BAR_S:>6.2f} {row['median_s']:>8.2f} "
              f"{row['cpu_s']:>6.2f}  {imported:<11}  {', '.join(row['differs']) or 'no'}")
        if row["min_s"] > BAR_S or row["imports_tensorflow"] or row["differs"]:
            failed.append(name)
    worst = max(rows.values(), key=lambda r: r["min_s"])["min_s"] if rows else 0
    print(f"slowest: {worst:.2f} s = {worst / BAR_S:.2f}x the bar; {len(failed)} of {len(rows)} failing"
          + (f": {', '.join(failed)}" if failed else ""))
    (out / "lint_keras.json").write_text(json.dumps(rows, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
