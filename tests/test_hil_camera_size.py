"""Camera-size inputs through `k210 hil`, the real CLI (issue 21): a 256x256x3 uint8 input (196 608 B)
runs through the C runner's RISC-V build under QEMU, bit-identical to its host build, and an input
bigger than a board's advertised max_input is refused after HELLO, before any upload or inference,
with exit 2 (bad input: the limit is known) rather than 3 after a run of TOO_BIG errors."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from boardfakes.arith_model import make_arith_kmodel
from boardfakes.links import C_DIR, build_c, require_tool

CAMERA = 256 * 256 * 3
QEMU_LAUNCHER = C_DIR / "qemu" / "qemu_board.py"


def host_runner(*extra: str) -> str:
    return shlex.join([str(build_c("host") / "k210_runner_host"), "--pty", "--exit-with-parent", *extra])


def hil(kmodel: Path, board: str, golden: str, limit: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "k210.host.cli", "hil", str(kmodel), "--board-cmd", board,
                           "--golden-board-cmd", golden, "--upload", "--dataset", "random", "--limit", str(limit),
                           "--connect-timeout", "30", "--json"], capture_output=True, text=True, timeout=600)


def test_a_256x256x3_input_runs_on_the_qemu_runner_bit_identical_to_the_host_build(tmp_path: Path) -> None:
    require_tool("qemu-system-riscv64")
    kmodel = tmp_path / "camera.kmodel"
    kmodel.write_bytes(make_arith_kmodel(version=5, input_len=CAMERA))
    elf = build_c("qemu") / "qemu" / "k210_runner_qemu.elf"
    done = hil(kmodel, shlex.join([sys.executable, str(QEMU_LAUNCHER), "--elf", str(elf)]), host_runner(), 3)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)["result"]
    assert report["passed"] and report["count"] == 3
    assert report["boards"][0]["backend"] == "c-sdk-kpu"


def test_an_input_over_the_boards_max_input_is_exit_2_before_any_run(tmp_path: Path) -> None:
    kmodel = tmp_path / "camera.kmodel"
    kmodel.write_bytes(make_arith_kmodel(version=5, input_len=CAMERA))
    small = host_runner("--max-input", "150528")  # a 224x224x3 board
    done = hil(kmodel, small, host_runner(), 2)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"input of {CAMERA} bytes" in done.stderr and "takes at most 150528" in done.stderr
    assert "TOO_BIG" not in done.stderr


@pytest.mark.slow
def test_a_256x256x3_uint8_model_runs_through_hil_virtual(tmp_path: Path) -> None:
    """A real nncase 1.9 kmodel with a camera-size uint8 input: `k210 hil --virtual` serves it (it gave
    TOO_BIG after 15 s and exit 3 when the runner's default max_input was 163 840), every output as the
    simulator's."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((256, 256, 3)), keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "cam.keras")
    kmodel = tmp_path / "cam.kmodel"
    compiled = subprocess.run([sys.executable, "-m", "k210.host.cli", "compile", str(tmp_path / "cam.keras"),
                               "--quant", "uint8", "--calib", "8", "--dataset", "random", "--no-lint", "-o",
                               str(kmodel)], capture_output=True, text=True, timeout=600)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "k210.host.cli", "hil", str(kmodel), "--virtual", "--upload",
                           "--dataset", "random", "--limit", "3", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)["result"]
    assert report["passed"] and report["count"] == 3
