"""The first HIL run on real photographs (`python -m benchmarks.hil_photos`): issue 28, part 4.

The photographs of k210.models.photos (centre square, resized bilinearly) at 128x128x3 and 224x224x3
go through `k210 hil --virtual` at 1.5 Mbaud three times, as benchmarks/hil_cache does for synthetic
sets: raw (`--no-cache --no-zlib`), a first run on an empty SD card (zlib where smaller) and a second
on the same card. Each run's images/s is put against the raw-link limit (baud/10 ÷ input bytes) and
every output must equal the raw run's. The kmodels are tiny untrained 128x128x3 / 224x224x3 uint8
classifiers (a 4x4 or 8x8 average pool, a 3x3 conv, a global pool, 5 classes) so the simulator's
compute stays small next to the link. The virtual board's inflate speed is its modelled assumption
(host/virtualboard/storage.py), printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def photo_folder(out: Path, side: int) -> tuple[Path, int]:
    from PIL import Image

    from k210.models.photos import centre_square, load_photos

    folder = out / f"photos{side}"
    folder.mkdir(parents=True, exist_ok=True)
    photos = load_photos()
    for photo in photos:
        target = folder / f"{photo.name}.png"
        if not target.exists():
            Image.fromarray(centre_square(photo.pixels)).resize((side, side), Image.BILINEAR).save(target)
    return folder, len(photos)


def tiny_kmodel(out: Path, side: int) -> Path:
    kmodel = out / f"rgb{side}_uint8.kmodel"
    if kmodel.exists():
        return kmodel
    import keras

    from k210.host.cli import main as k210

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((side, side, 3)), keras.layers.AveragePooling2D(4 if side <= 128 else 8),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5, activation="softmax"),
    ])
    source = out / f"rgb{side}.keras"
    model.save(source)
    argv = ["compile", str(source), "--dataset", "random", "--calib", "8", "--no-lint", "-o", str(kmodel)]
    if k210(argv) != 0:
        raise SystemExit(f"`k210 compile` of the {side}x{side}x3 model failed")
    return kmodel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hil_photos", description=__doc__)
    parser.add_argument("--out", default="out/bench/hil_photos")
    args = parser.parse_args(argv)
    from benchmarks import hil_cache
    from benchmarks.hil_link import journal_outputs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, ok = {}, True
    for side in (128, 224):
        folder, count = photo_folder(out, side)
        runs = hil_cache.cache_runs(f"photos{side}", tiny_kmodel(out, side), None, count, side * side * 3, out,
                                    journal_outputs, data=str(folder))
        results[f"{side}x{side}x3"] = runs
        ok &= all(runs[r]["outputs_equal_raw_run"] for r in ("raw", "first", "second"))
    print(f"\nphotographs through `k210 hil --virtual` at {hil_cache.BAUD} baud; {hil_cache.assumptions()}")
    print(f"{'input':<12} {'run':<7} {'images':>6} {'images/s':>9} {'limit':>7} {'vs limit':>9} "
          f"{'B/image sent':>13}  = raw")
    for name, runs in results.items():
        for run in ("raw", "first", "second"):
            r = runs[run]
            print(f"{name:<12} {run:<7} {r['images']:>6} {r['images_per_s']:>9.2f} {runs['raw_link_limit']:>7.2f} "
                  f"{r['x_raw_link']:>8.2f}x {np.round(r['wire_bytes_per_image']):>13.0f}  "
                  f"{'yes' if r['outputs_equal_raw_run'] else 'NO'}")
    (out / "hil_photos.json").write_text(json.dumps(results, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
