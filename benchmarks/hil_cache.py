"""Issue 15 in benchmarks.hil_link: test sets that cross the wire once, images that cost less than their bytes.

For the X/O kmodel (28x28x1, 784 bytes) and a tiny 128x128x3 kmodel on the `shapes` set (49 152 bytes;
compiled here: a 4x4 average pool, a 3x3 conv, a global pool and a 5-way Dense, so the simulator's
compute stays small next to the link), the same images go through `k210 hil` on a virtual board three times:

* raw: `--no-cache --no-zlib`, every tensor's bytes as they are (what a runner without caps gets);
* first: an empty SD card: images that compress go as zlib streams, each kept by the board;
* second: the same card: each image named by its SHA-256 only.

Raw-link limit = (baud/10) ÷ input bytes: the most images/s a line can carry as raw tensors. Each run's
images/s is put against it ("x raw-link"), and every output must be bit-identical to the raw run's.
A fault run then repeats the second run of the X/O set with a damaged line, resets, three cache
entries damaged on purpose and a power cut during the board's next card write: no image lost, no
output different. The card's speeds and the board's inflate speed are the virtual board's modelled
assumptions (host/virtualboard/storage.py), printed with the figures.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from k210.host.hil.run import HilConfig, run_hil
from k210.host.virtualboard.storage import INFLATE_BPS, SD_READ_BPS, SD_WRITE_BPS, damage_file

BAUD = 1_500_000
RX_RING = 65536  # MaixPy read_buf_len of these boards: the line fills it while the board inflates and writes
CACHE_FAULTS = "corrupt=1e-4,drop=1e-4,dup=1e-5,reset=400"


def rgb_kmodel(out: Path) -> Path:
    """A tiny uint8 128x128x3 classifier for `shapes` (trained one epoch: its accuracy is not the point)."""
    kmodel = out / "rgb128" / "rgb128_uint8.kmodel"
    if kmodel.exists():
        return kmodel
    import keras

    from k210.host.cli import main as k210
    from k210.models.datasets import load_dataset, normalise

    kmodel.parent.mkdir(parents=True, exist_ok=True)
    data = load_dataset("shapes")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((128, 128, 3)),
        keras.layers.AveragePooling2D(4),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(data.labels), activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(normalise(data.x_train[:1000]), data.y_train[:1000], epochs=1, batch_size=32, verbose=0)
    keras_path = kmodel.parent / "rgb128.keras"
    model.save(keras_path)
    argv = ["compile", str(keras_path), "--quant", "uint8", "--calib", "100", "--dataset", "shapes", "--no-lint",
            "-o", str(kmodel)]
    print(f"$ k210 {' '.join(argv)}", flush=True)
    if k210(argv) != 0:
        raise SystemExit("`k210 compile` of the 128x128x3 model failed")
    return kmodel


def _run(kmodel: Path, dataset: str | None, images: int, journal: Path, board_args: list[str], **extra: Any) -> dict:
    report = run_hil(HilConfig(kmodel=str(kmodel), virtual=True, dataset=dataset, split="test", limit=images,
                               baud=BAUD, no_reference=True, workers=1, journal=str(journal), fault_seed=1,
                               board_args=board_args, **extra))
    board = report["boards"][0]
    return {"images": report["count"], "images_per_s": report["images_per_s"], "retries": report["retries"],
            "resets": report["resets"], "bytes_to_board": board["bytes_to_board"], "samples": board["samples"],
            "bit_identical_to_simulator": report["board_vs_simulator"]["bit_identical"], "journal": str(journal)}


def cache_runs(name: str, kmodel: Path, dataset: str | None, images: int, input_bytes: int, out: Path,
               journal_outputs: Any, **config: Any) -> dict:
    """raw, first and second run of one set; their figures and whether every output equals the raw run's.
    `config`: more HilConfig fields (data=FOLDER for a folder of images instead of a named set)."""
    sd = out / f"{name}-sd"
    shutil.rmtree(sd, ignore_errors=True)
    card = ["--sd-dir", str(sd), "--read-buf-len", str(RX_RING)]
    limit = BAUD / 10 / input_bytes
    runs: dict[str, Any] = {"raw_link_limit": limit, "input_bytes": input_bytes, "card": str(sd)}
    reference: dict[int, str] | None = None
    for run, extra in (("raw", {"no_cache": True, "no_zlib": True}), ("first", {}), ("second", {})):
        print(f"-- {name}: {run} run, {images} images", flush=True)
        started = time.perf_counter()
        figures = _run(kmodel, dataset, images, out / f"{name}-{run}.journal.jsonl", card, **extra, **config)
        figures["wall_s"] = time.perf_counter() - started
        outputs = journal_outputs(figures["journal"])
        reference = reference if reference is not None else outputs
        figures["x_raw_link"] = figures["images_per_s"] / limit
        figures["wire_bytes_per_image"] = figures["bytes_to_board"] / max(1, figures["images"])
        figures["outputs_equal_raw_run"] = len(outputs) == images and outputs == reference
        runs[run] = figures
    return runs


def fault_run(name: str, kmodel: Path, dataset: str, images: int, out: Path, reference_journal: str,
              journal_outputs: Any) -> dict:
    """The warm card with three entries damaged, a damaged line, resets, and a power cut mid-write."""
    from k210.firmware.k210cache import entry_name
    from k210.models.datasets import load_dataset

    sd = out / f"{name}-sd"
    x = load_dataset(dataset).x_test  # uint8 models take the pixels as they are: the entry's tensor
    damaged = []
    for i in (images // 4, images // 2, 3 * images // 4):
        entry = sd / entry_name(hashlib.sha256(x[i].tobytes()).digest())
        if not entry.exists():
            raise SystemExit(f"no cache entry for image {i} ({entry.name}): the second run did not keep it")
        damage_file(entry)
        damaged.append(f"image {i}")
    figures = _run(kmodel, dataset, images, out / f"{name}-faulty.journal.jsonl",
                   ["--sd-dir", str(sd), "--read-buf-len", str(RX_RING), "--sd-cut-at", "2"], faults=CACHE_FAULTS)
    expected, got = journal_outputs(reference_journal), journal_outputs(figures["journal"])
    figures.update(damaged_entries=damaged, faults=CACHE_FAULTS + ", power cut on the 2nd card write",
                   images_lost=images - len(got), outputs_differing=sum(1 for i in got if got[i] != expected.get(i)))
    return figures


def assumptions() -> str:
    return (f"virtual card: write {SD_WRITE_BPS / 1e6:g} MB/s, read {SD_READ_BPS / 1e6:g} MB/s; "
            f"uzlib {INFLATE_BPS / 1e6:g} MB/s of output (host/virtualboard/storage.py)")
