"""Shared by the virtual-board and HIL tests: two tiny uint8 X/O kmodels, built once per test process.

A 784-16-2 MLP trained for one short epoch on procedural X/O images and compiled with uint8 PTQ (a
real kmodel v5 with KPU code; seconds to build, about a millisecond per image in the simulator),
plus a second one with other weights and the same tensors, to play the wrong model.
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def tiny_models() -> dict[str, Path]:
    import keras
    import numpy as np

    from k210.host.cli import main
    from k210.models.datasets import load_dataset, normalise

    out = Path(tempfile.mkdtemp(prefix="k210-hil-tests-"))
    atexit.register(shutil.rmtree, out, True)
    data = load_dataset("xo")
    x, y = normalise(data.x_train[:1500]), data.y_train[:1500]
    paths: dict[str, Path] = {"dir": out}
    for name, seed in (("a", 0), ("b", 1)):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=64, verbose=0)
        keras_path = out / f"tiny_{name}.keras"
        model.save(keras_path)
        kmodel = out / f"tiny_{name}.kmodel"
        code = main(["compile", str(keras_path), "--quant", "uint8", "--calib", "40", "--dataset", "xo", "--no-lint",
                     "-o", str(kmodel)])
        assert code == 0, f"compile failed ({code})"
        paths[f"keras_{name}"], paths[f"kmodel_{name}"] = keras_path, kmodel
        assert np.frombuffer(kmodel.read_bytes()[:4], np.uint8).tobytes() == b"LDMK"
    return paths


class FakePort:
    """A pseudo-terminal whose far end a test scripts: silent, or answering with fixed text."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.master, self.slave = os.openpty()
        import tty

        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.answer = answer
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                os.read(self.master, 4096)
                if self.answer is not None:
                    os.write(self.master, self.answer)
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=1)
        time.sleep(0.01)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
