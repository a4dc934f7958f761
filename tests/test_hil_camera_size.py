"""Camera-size inputs through `k210 hil`, the real CLI (issue 21): a 256x256x3 uint8 input (196 608 B)
runs through the C runner's RISC-V build under QEMU, bit-identical to its host build (arithmetic fake
kmodel) and, for a real kmodel compiled by nncase, to nncase's simulator (QEMU's KPU is the simulator
on the host, reached through semihosting: firmware/c/qemu/qemu_board.py), a board that bends an output
fails; `k210 hil --virtual` serves it too; and an input bigger than a board's advertised max_input is
refused after HELLO, before any upload or inference, with exit 2 (bad input: the limit is known) rather
than 3 after a run of TOO_BIG errors."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from boardfakes.arith_model import make_arith_kmodel
from boardfakes.links import C_DIR, build_c, require_tool

from k210.firmware import k210wire as w
from k210.host.hil.model import KModel

CAMERA = 256 * 256 * 3
QEMU_LAUNCHER = C_DIR / "qemu" / "qemu_board.py"
BEND_BOARD = Path(__file__).resolve().parent / "boardfakes" / "bend_board.py"


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
    # and, from the registry, which runner would take it: the C runner's static buffer is K210_MAX_INPUT
    assert "largest inputs for kmodel v5: CanMV feat/kpu" in done.stderr and "C runner 524288 B" in done.stderr
    assert "TOO_BIG" not in done.stderr


@pytest.fixture(scope="module")
def camera_kmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real nncase 1.9 kmodel (v5) with a camera-size uint8 input and two outputs (class scores, two values)."""
    import keras

    folder = tmp_path_factory.mktemp("camera")
    keras.utils.set_random_seed(0)
    x = keras.Input((256, 256, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x))
    model = keras.Model(x, [keras.layers.Dense(3, activation="softmax")(features), keras.layers.Dense(2)(features)])
    model.save(folder / "cam.keras")
    kmodel = folder / "cam.kmodel"
    compiled = subprocess.run([sys.executable, "-m", "k210.host.cli", "compile", str(folder / "cam.keras"),
                               "--quant", "uint8", "--calib", "8", "--dataset", "random", "--no-lint", "-o",
                               str(kmodel)], capture_output=True, text=True, timeout=600)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    return kmodel


def hil_json(kmodel: Path, *board: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "k210.host.cli", "hil", str(kmodel), *board, "--upload",
                           "--dataset", "random", "--limit", "3", "--no-reference", "--connect-timeout", "30",
                           "--json"], capture_output=True, text=True, timeout=600)
    return done.returncode, json.loads(done.stdout)["result"] if done.stdout else {}, done.stderr


@pytest.mark.slow
def test_a_256x256x3_uint8_model_runs_through_hil_virtual(camera_kmodel: Path) -> None:
    """`k210 hil --virtual` serves a camera-size uint8 kmodel (it gave TOO_BIG after 15 s and exit 3 when the
    runner's default max_input was 163 840), output 0 as the simulator's: the virtual board is CanMV main's
    API, which returns output 0 only (firmware/README.md)."""
    card = json.loads(camera_kmodel.with_name(camera_kmodel.name + ".json").read_text())
    # compile says, from the registry, which firmware's runner cannot take the input (before any run)
    assert "CanMV feat/kpu: input of 196608 B: KPU.run takes a grayscale image: one 8-bit channel only" in card["notes"]
    code, report, stderr = hil_json(camera_kmodel, "--virtual", "--outputs", "0")
    assert code == 0, stderr[-2000:]
    assert report["passed"] and report["count"] == 3
    assert report["outputs"][0]["board_vs_simulator"]["bit_identical"] == 1.0


@pytest.mark.slow
def test_a_256x256x3_uint8_model_runs_in_the_c_runner_under_qemu_bit_identical_to_nncases_simulator(
        camera_kmodel: Path) -> None:
    """The C runner's RISC-V code under QEMU (wire, inflate, SHA-256, its 196 608-byte buffers), its KPU calls
    answered by nncase's simulator on the host: every output of every image bit-identical to the
    simulator's in hil's verdict; the same board behind a relay that bends output 1 fails (exit 1) on
    that output alone."""
    require_tool("qemu-system-riscv64")
    elf = build_c("qemu") / "qemu" / "k210_runner_qemu.elf"
    board = [sys.executable, str(QEMU_LAUNCHER), "--elf", str(elf)]
    code, report, stderr = hil_json(camera_kmodel, "--board-cmd", shlex.join(board))
    assert code == 0, stderr[-2000:]
    assert report["passed"] and report["count"] == 3 and report["boards"][0]["backend"] == "c-sdk-kpu"
    assert [o["board_vs_simulator"]["bit_identical"] for o in report["outputs"]] == [1.0, 1.0]
    assert [o["board_vs_simulator"]["identical_images"] for o in report["outputs"]] == [3, 3]

    bent = [sys.executable, str(BEND_BOARD), "--output", "1", "--", *board]
    code, report, stderr = hil_json(camera_kmodel, "--board-cmd", shlex.join(bent))
    assert code == 1, stderr[-2000:]
    assert not report["passed"] and [o["passed"] for o in report["outputs"]] == [True, False]
    assert [o["board_vs_simulator"]["bit_identical"] for o in report["outputs"]] == [1.0, 0.0]
    assert "output 1: the board differs from the simulator" in stderr


def reboot(url: str, wait: float = 30.0) -> list[str]:
    """Send REBOOT on the board's UART; the names of the frames it answers with (ACK, then its boot HELLO)."""
    port = serial.serial_for_url(url, 1_500_000, timeout=0.05)
    try:
        port.write(w.encode_frame(w.REBOOT, 0, 1, b""))
        deadline, got, names = time.monotonic() + wait, b"", []
        while time.monotonic() < deadline and len(names) < 2:
            got += port.read(65536)
            names = [w.TYPE_NAMES.get(t, str(t)) for _, t, _, _, _ in w.decode_frames(got)]
        return names
    finally:
        port.close()


def one_image(url: str, kmodel: KModel, image: bytes) -> list[bytes]:
    """Upload the kmodel through a `k210 hil` session and run one image: every output's bytes."""
    from k210.host.hil.ports import open_port
    from k210.host.hil.session import BoardSession

    session = BoardSession(open_port(url, 1_500_000), connect_timeout=30)
    try:
        session.connect()
        assert session.ensure_model(kmodel, upload=True) == "upload"
        todo, got = iter([0]), {}
        session.stream(lambda: next(todo, None), lambda back: None, lambda i: image,
                       lambda i, outputs, us: got.__setitem__(i, [o.data for o in outputs]))
        return got[0]
    finally:
        session.port.close()


@pytest.mark.slow
def test_the_qemu_kpu_bridge_serves_again_after_a_reboot(camera_kmodel: Path) -> None:
    """A REBOOT resets the guest (QEMU reloads its image, the bridge's handles with it): the runner opens
    the FIFOs again, and the uploaded kmodel's outputs are still the simulator's, byte for byte."""
    import numpy as np

    from k210.converters.simulate import KModelSimulator
    from k210.host.hil.handlers import board_command

    require_tool("qemu-system-riscv64")
    data = camera_kmodel.read_bytes()
    kmodel = KModel.from_bytes(str(camera_kmodel), data)
    image = np.random.default_rng(1).integers(0, 256, CAMERA, dtype=np.uint8).tobytes()
    want = [o.tobytes() for o in KModelSimulator(data).run(np.frombuffer(image, np.uint8).reshape(1, 256, 256, 3))]
    elf = build_c("qemu") / "qemu" / "k210_runner_qemu.elf"
    handler = board_command(shlex.join([sys.executable, str(QEMU_LAUNCHER), "--elf", str(elf)]))
    handler.start()
    try:
        assert one_image(handler.url, kmodel, image) == want
        assert reboot(handler.url) == ["ACK", "HELLO"]
        assert one_image(handler.url, kmodel, image) == want  # uploaded again: the reset forgot it
    finally:
        handler.stop()
