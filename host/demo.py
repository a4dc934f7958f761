"""`make demo`: the whole X/O journey, each step the `k210` command a user would type.

train -> freeze -> compile (float, uint8) -> inspect -> verify (both) -> HIL on a virtual board,
then one summary table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from .cli import main as k210
from .cliutil import format_table


def step(title: str, args: list[str], timings: dict[str, float]) -> None:
    print(f"\n== {title}\n$ k210 {shlex.join(args)}", flush=True)
    started = time.perf_counter()
    code = k210(args)
    timings[title] = time.perf_counter() - started
    if code != 0:
        print(f"demo stopped: `k210 {args[0]}` exited {code}", file=sys.stderr)
        raise SystemExit(code)


def run(out: Path, hil: bool = True) -> int:
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    keras_model, pb = out / "xo_mlp.keras", out / "xo_mlp.pb"
    kfloat, kuint8 = out / "xo_float.kmodel", out / "xo_uint8.kmodel"
    step("train", ["train", "xo", "-o", str(out)], timings)
    step("freeze", ["freeze", str(keras_model)], timings)
    step("compile float", ["compile", str(pb), "--quant", "float", "-o", str(kfloat)], timings)
    step("compile uint8", ["compile", str(pb), "--quant", "uint8", "--calib", "200", "-o", str(kuint8)], timings)
    step("inspect", ["inspect", str(kuint8)], timings)
    step("verify uint8", ["verify", str(kuint8), "--reference", str(keras_model), "--dataset", "xo",
                          "--json-out", str(out / "verify_uint8.json")], timings)
    step("verify float", ["verify", str(kfloat), "--reference", str(pb), "--dataset", "xo", "--limit", "400",
                          "--json-out", str(out / "verify_float.json")], timings)
    hil_report = out / "hil.json"
    if hil:
        step("hil (virtual board)", ["hil", str(kuint8), "--virtual", "--reference", str(keras_model),
                                     "--dataset", "xo", "--limit", "400", "--upload", "--json-out", str(hil_report),
                                     "--report", str(out / "hil-report")], timings)

    meta = json.loads((out / "xo_mlp.meta.json").read_text())
    vq = json.loads((out / "verify_uint8.json").read_text())["result"]  # the JSON envelope's figures
    vf = json.loads((out / "verify_float.json").read_text())["result"]
    cards = {k: json.loads(Path(f"{p}.json").read_text()) for k, p in (("float", kfloat), ("uint8", kuint8))}
    rows = [
        ("TF (Keras) float", "-", f"{meta['test_accuracy']:.4f}", "-", "-"),
        ("kmodel float (simulator)", f"{cards['float']['kmodel']['size']}", f"{vf['kmodel_accuracy']:.4f}",
         f"{vf['agreement']:.4f}", f"{vf['max_abs_error']:.2g}"),
        ("kmodel uint8 (simulator)", f"{cards['uint8']['kmodel']['size']}", f"{vq['kmodel_accuracy']:.4f}",
         f"{vq['agreement']:.4f}", f"{vq['max_abs_error']:.2g}"),
    ]
    board_images = ""
    if hil and hil_report.exists():
        h = json.loads(hil_report.read_text())["result"]
        board_images = f", the board on the first {h['count']}"
        rows.append(("board uint8 (virtual, HIL)", f"{cards['uint8']['kmodel']['size']}",
                     f"{h['board_accuracy']:.4f}", f"{h['board_vs_reference']['agreement']:.4f}",
                     f"{h['board_vs_reference']['max_abs_error']:.2g}"))
    print("\n== summary: X/O MLP on the procedural X/O test set "
          f"({vq['count']} images; float kmodel on the first {vf['count']}{board_images})")
    print(format_table(("model", "bytes", "accuracy", "agreement vs TF", "max abs err"), rows))
    print("kmodel uint8 modules: " + ", ".join(cards["uint8"]["kmodel"]["modules"])
          + f"; total time {time.perf_counter() - started:.0f} s ("
          + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + ")")
    print(f"artefacts in {out}/ (curves: {out / 'xo_mlp.curves.png'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k210.host.demo", description=__doc__)
    parser.add_argument("--out", default="out/demo", help="where to put the artefacts (default out/demo)")
    parser.add_argument("--no-hil", action="store_true", help="skip the hardware-in-the-loop step")
    args = parser.parse_args(argv)
    return run(Path(args.out), hil=not args.no_hil)


if __name__ == "__main__":
    sys.exit(main())
