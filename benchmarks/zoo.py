"""Accuracy and cost of every seed model on its way to the K210 (`python -m benchmarks.zoo`).

For each zoo model: train on its dataset (or reuse the one trained earlier in OUT), compile a float
and a uint8-PTQ kmodel, lint it, verify both kmodels in nncase's simulator against TF on the test
set, and time the simulator against TF on this machine. Prints two Markdown tables and writes
OUT/zoo.json. Every step is the `k210` command a user would run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError
from k210.host.cli import main as k210
from k210.host.cliutil import format_table

CNN_MODELS = {"lenet5", "lenet_kpu", "mobilenet_kpu"}
# Float kmodels run on the simulator's CPU kernels: the 128x128 MobileNet takes seconds per image.
FLOAT_LIMITS = {"mobilenet_kpu": 200}
HIL_IMAGES = {"mobilenet_kpu": 200}  # virtual-board runs: board vs simulator, bit for bit
K210_SRAM = 6 * 1024 * 1024
K210_KPU_RAM = 2 * 1024 * 1024


def run_k210(*args: object, allowed: tuple[int, ...] = (0,)) -> None:
    argv = [str(a) for a in args]
    print(f"$ k210 {' '.join(argv)}", flush=True)
    code = k210(argv)
    if code not in allowed:
        raise RuntimeError(f"`k210 {argv[0]}` exited {code}")


def dataset_label(name: str) -> tuple[str | None, str | None]:
    """(what to call the dataset in the tables, why it cannot be loaded)."""
    from k210.models.datasets import load_dataset
    from k210.models.mnist import SUBSET_5K

    try:
        dataset = load_dataset(name)
    except BadInputError as exc:
        return None, str(exc)
    return (f"{name} ({SUBSET_5K.removeprefix('MNIST ')})" if SUBSET_5K in dataset.source else name), None


def throughput(kmodel: Path, keras_path: Path, n: int = 64) -> dict:
    """Images/s of one simulator process and of TF (Keras, batch 1 and batch 256) on one core's work."""
    import keras

    from k210.converters.simulate import KModelSimulator

    sim = KModelSimulator(kmodel.read_bytes())
    desc = sim.info.inputs[0]
    x = np.zeros(desc.shape, np.uint8 if desc.dtype == "uint8" else np.float32)
    sim.run(x)
    started = time.perf_counter()
    for _ in range(n):
        sim.run(x)
    sim_rate = n / (time.perf_counter() - started)
    model = keras.models.load_model(keras_path, compile=False)
    one = np.zeros((1, *model.inputs[0].shape[1:]), np.float32)
    model(one, training=False)
    started = time.perf_counter()
    for _ in range(n):
        model(one, training=False)
    tf_rate = n / (time.perf_counter() - started)
    batch = np.zeros((256, *model.inputs[0].shape[1:]), np.float32)
    model.predict(batch, verbose=0)
    started = time.perf_counter()
    model.predict(batch, batch_size=256, verbose=0)
    tf_batched = 256 / (time.perf_counter() - started)
    return {"simulator_images_per_s": sim_rate, "tf_batch1_images_per_s": tf_rate,
            "tf_batch256_images_per_s": tf_batched, "simulator_vs_tf_batch1": sim_rate / tf_rate}


def lint_placements(kmodel_source: Path) -> dict:
    from k210.host.lint import lint_path

    report = lint_path(str(kmodel_source), compiler="nncase1.9", quant="uint8").to_dict()
    counts: dict[str, int] = {}
    for op in report["ops"]:
        counts[op["placement"]] = counts.get(op["placement"], 0) + 1
    return counts


def bench_model(name: str, out: Path, retrain: bool, float_limit: int | None, epochs: int | None,
                lint: bool = True, reuse: bool = False) -> dict:
    from k210.models.zoo import get_model_def

    model_def = get_model_def(name)
    label, missing = dataset_label(model_def.dataset)
    if missing:
        return {"model": name, "dataset": model_def.dataset, "skipped": missing}
    keras_path = out / "models" / f"{name}.keras"
    if retrain or not keras_path.exists():
        args = ["train", name, "-o", out / "models"]
        run_k210(*(args + (["--epochs", epochs] if epochs else [])))
    meta = json.loads((out / "models" / f"{name}.meta.json").read_text())
    result: dict = {"model": name, "dataset": label, "tf_accuracy": meta["test_accuracy"]}
    for quant in ("float", "uint8"):
        kmodel = out / f"{name}_{quant}.kmodel"
        report = out / f"{name}_{quant}.verify.json"
        fresh = report.exists() and report.stat().st_mtime > max(kmodel.stat().st_mtime, keras_path.stat().st_mtime) \
            if kmodel.exists() else False
        if not (reuse and fresh):
            run_k210("compile", keras_path, "--quant", quant, "--calib", 500, "--no-lint", "-o", kmodel)
            limit = FLOAT_LIMITS.get(name, float_limit) if quant == "float" and name in CNN_MODELS and float_limit \
                else None
            # The default pass rules (docs/pass-rules.md); exit 1 still writes every figure.
            verify = ["verify", kmodel, "--reference", keras_path, "--dataset", model_def.dataset, "--json-out", report]
            run_k210(*(verify + (["--limit", limit] if limit else [])), allowed=(0, 1))
        card = json.loads(Path(f"{kmodel}.json").read_text())
        figures = json.loads(report.read_text())["result"]
        result[quant] = {
            "accuracy": figures["kmodel_accuracy"],
            "reference_accuracy_same_images": figures["reference_accuracy"],
            "agreement": figures["agreement"],
            "images": figures["count"],
            "kmodel_bytes": card["kmodel"]["size"],
            "modules": card["kmodel"]["modules"],
            "memory": card["memory"],
            "compile_s": card["compiler"]["seconds"],
            "verdict": "PASS" if figures["passed"] else f"FAIL: {figures['reasons'][0]}",
            "held_out": (figures.get("check_data") or {}).get("held_out"),
        }
    result["placements_uint8"] = lint_placements(keras_path) if lint else None
    result["throughput_uint8"] = throughput(out / f"{name}_uint8.kmodel", keras_path)
    if name in HIL_IMAGES:
        result["hil_uint8"] = virtual_hil(out / f"{name}_uint8.kmodel", model_def.dataset, HIL_IMAGES[name],
                                          out / f"{name}_uint8.hil.json", reuse)
    return result


def virtual_hil(kmodel: Path, dataset: str, images: int, report: Path, reuse: bool) -> dict:
    """`k210 hil --virtual` on the first test images: the board's outputs against the simulator's and TF's."""
    if not (reuse and report.exists() and report.stat().st_mtime > kmodel.stat().st_mtime):
        # Exit 1 (agreement with TF under 0.99) still writes every figure: the table reports them.
        run_k210("hil", kmodel, "--virtual", "--dataset", dataset, "--limit", images, "--json-out", report,
                 allowed=(0, 1))
    figures = json.loads(report.read_text())["result"]
    return {"images": figures["count"],
            "board_vs_simulator_bit_identical": figures["board_vs_simulator"]["bit_identical"],
            "board_vs_tf_agreement": figures["board_vs_reference"].get("agreement"),
            "images_per_s": figures["images_per_s"],
            "verdict": "PASS" if figures["passed"] else f"FAIL: {figures['reasons'][0]}"}


def render(results: list[dict]) -> str:
    acc_rows, cost_rows = [], []
    for r in results:
        if "skipped" in r:
            acc_rows.append((r["model"], r["dataset"], "-", "-", "-", "-", f"skipped: {r['skipped'][:60]}", "-"))
            continue
        f, q = r["float"], r["uint8"]
        placements = r.get("placements_uint8") or {}
        share = ", ".join(f"{k} {v}" for k, v in sorted(placements.items())) or "lint n/a"
        subset = "" if f["images"] == q["images"] else f"; TF {f['reference_accuracy_same_images']:.4f} on these"
        acc_rows.append((
            r["model"], r["dataset"], f"{r['tf_accuracy']:.4f}",
            f"{f['accuracy']:.4f} ({f['images']}{subset})", f"{q['accuracy']:.4f} ({q['images']})",
            f"{q['agreement']:.4f}", share, q.get("verdict", "-"),
        ))
        mem = q["memory"]
        t = r["throughput_uint8"]
        cost_rows.append((
            r["model"], f"{f['kmodel_bytes']:,}", f"{q['kmodel_bytes']:,}", ", ".join(q["modules"]),
            f"{mem.get('total', 0):,} / {K210_SRAM:,}", f"{f['compile_s']:.1f} / {q['compile_s']:.1f}",
            f"{t['simulator_images_per_s']:.0f}", f"{t['tf_batch1_images_per_s']:.0f}",
            f"{t['simulator_vs_tf_batch1']:.2f}",
        ))
    acc = format_table(("model", "dataset", "TF float", "kmodel float (images)", "kmodel uint8 (images)",
                        "uint8 top-1 agreement", "ops by placement (uint8)", "uint8 verdict (held-out)"),
                       acc_rows)
    cost = format_table(("model", "float bytes", "uint8 bytes", "uint8 modules", "uint8 memory TOTAL / 6 MB SRAM",
                         "compile s (f/u8)", "sim img/s", "TF img/s (b=1)", "sim/TF"), cost_rows)
    return f"Accuracy\n{acc}\n\nCost\n{cost}"


def main(argv: list[str] | None = None) -> int:
    from k210.core.quiet import preload_tensorflow
    from k210.models.zoo import ZOO

    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__)
    parser.add_argument("--models", nargs="*", default=list(ZOO), help="zoo models (default: all)")
    parser.add_argument("--out", default="out/bench/zoo")
    parser.add_argument("--retrain", action="store_true", help="train again even if OUT has the model")
    parser.add_argument("--epochs", type=int, help="override the recipes' epochs (quick runs)")
    parser.add_argument("--float-limit", type=int, default=1000,
                        help="test images for the float kmodels of CNNs (~0.3 s each in the simulator; 0 = all)")
    parser.add_argument("--no-lint", action="store_true", help="leave out the lint placement column")
    parser.add_argument("--reuse", action="store_true",
                        help="keep kmodels and verify reports already in OUT that are newer than their model")
    args = parser.parse_args(argv)
    preload_tensorflow()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [bench_model(n, out, args.retrain, args.float_limit, args.epochs, not args.no_lint, args.reuse)
               for n in args.models]
    machine = f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, {platform.system()}"
    (out / "zoo.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"\nmachine: {machine}")
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
