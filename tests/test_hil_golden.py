"""`k210 hil --golden-board-cmd`: the board under test against a second, trusted board, through the real CLI.

The C runner's RISC-V build in QEMU is checked against its host build (both with the arithmetic stand-in for
the KPU, which nncase's simulator cannot run): every output bit-identical on 200 images, exit 0. A golden
board that computes something else (one bit of every image flipped on its way in) makes the run exit 1.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from boardfakes.arith_model import make_arith_kmodel
from boardfakes.links import C_DIR, REPO, build_c, require_tool

IMAGES = 200
INPUT_LEN = 784
QEMU_LAUNCHER = C_DIR / "qemu" / "qemu_board.py"
SKEW_BOARD = REPO / "tests" / "boardfakes" / "skew_board.py"


@pytest.fixture(scope="module")
def kmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("golden") / "arith.kmodel"
    path.write_bytes(make_arith_kmodel(version=5, input_len=INPUT_LEN))
    return path


def host_runner() -> str:
    return shlex.join([str(build_c("host") / "k210_runner_host"), "--pty", "--exit-with-parent"])


def hil(kmodel: Path, board: str, golden: str, limit: int, *extra: str) -> tuple[int, dict, str, float]:
    """Run `k210 hil` as a user would; (exit code, JSON envelope, stderr, seconds)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "k210.host.cli", "hil", str(kmodel), "--board-cmd", board,
                           "--golden-board-cmd", golden, "--upload", "--dataset", "random", "--limit", str(limit),
                           "--connect-timeout", "30", "--json", *extra], capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout), done.stderr, time.monotonic() - started


def test_qemu_risc_v_runner_equals_the_host_build_on_200_images(kmodel: Path) -> None:
    require_tool("qemu-system-riscv64")
    require_tool("riscv64-unknown-elf-gcc")
    elf = build_c("qemu") / "qemu" / "k210_runner_qemu.elf"
    qemu = shlex.join([sys.executable, str(QEMU_LAUNCHER), "--elf", str(elf)])
    code, envelope, stderr, seconds = hil(kmodel, qemu, host_runner(), IMAGES)
    assert code == 0, stderr
    report = envelope["result"]
    print(f"\nk210 hil --board-cmd <qemu runner> --golden-board-cmd <host build> --limit {IMAGES}: "
          f"{report['count']} images, every output bit-identical, {seconds:.1f} s wall")
    assert envelope["exit_code"] == 0 and report["passed"] and report["count"] == IMAGES
    assert report["boards"][0]["backend"] == "c-sdk-kpu" and report["boards"][0]["images"] == IMAGES
    assert report["golden"]["boards"][0]["backend"] == "c-host-arith"
    assert report["golden"]["boards"][0]["images"] == IMAGES
    assert [(o["dtype"], o["bit_identical"]) for o in report["outputs"]] == [("uint8", IMAGES), ("float32", IMAGES)]


def test_a_golden_board_that_computes_otherwise_fails_the_run(kmodel: Path) -> None:
    skewed = shlex.join([sys.executable, str(SKEW_BOARD), str(build_c("host") / "k210_runner_host")])
    code, envelope, stderr, _ = hil(kmodel, host_runner(), skewed, 50, "--no-zlib", "--no-cache")
    report = envelope["result"]
    assert code == 1 and envelope["exit_code"] == 1 and not report["passed"], stderr
    assert "check failed: output 0 bit-identical on 0 of 50 images" in stderr
    out0, out1 = report["outputs"]
    # One flipped input bit: a cosine check alone would pass output 0; bit-exact comparison does not.
    assert out0["bit_identical"] == 0 and out0["cosine"] > 0.99 and out0["max_abs_error"] > 0
    assert out1["bit_identical"] == 0 and out1["max_abs_error"] == 1.0


def test_a_kmodel_this_host_cannot_parse_needs_a_golden_board(kmodel: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "k210.host.cli", "hil", str(kmodel), "--board-cmd",
                           host_runner(), "--upload", "--dataset", "random", "--limit", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is not a kmodel" in done.stderr and "Traceback" not in done.stderr
