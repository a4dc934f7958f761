"""`k210 deploy` against a fake MaixPy REPL that really runs the code deploy sends."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
from fake_micropython import FakeBoardPort, FakeMicroPythonBoard, serve_over_tcp
from flashdeploy_support import kmodel_v4, kmodel_v5, write

from k210.core.errors import BadInputError
from k210.host.cli import main
from k210.host.deploy import board_files
from k210.host.deploy.board_files import BoardFiles, piece_hashes
from k210.host.deploy.errors import DeployFailed
from k210.host.deploy.plan import build_deploy_plan, packaged_runner_dir, runner_files
from k210.host.deploy.rawrepl import RawRepl, RemoteError
from k210.host.deploy.session import deploy, open_port

MAIN_PY = (
    "import gc\ntry:\n    import k210runner\nexcept ImportError:\n    pass\nimport k210_config\nk210runner.serve()\n"
)
RUNNER_PY = "import k210wire as w\ndef serve():\n    while True:\n        w.poll()\n"
WIRE_PY = "def poll():\n    pass\n" + "# protocol module padding\n" * 400


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runner"
    write(folder / "main.py", MAIN_PY.encode())
    write(folder / "k210runner.py", RUNNER_PY.encode())
    write(folder / "k210wire.py", WIRE_PY.encode())
    write(folder / "k210_config.py", b"CONFIG = {'baud': 115200}\n")  # the user's, never shipped as runner
    write(folder / "host_only_tool.py", b"import numpy\n")  # not imported by the runner: stays behind
    return folder


@pytest.fixture
def local(tmp_path: Path) -> dict[str, Path]:
    return {
        "kmodel": write(tmp_path / "digits.kmodel", kmodel_v4(60_000)),
        "v5": write(tmp_path / "digits5.kmodel", kmodel_v5(20_000)),
        "config": write(tmp_path / "digits.json", json.dumps({"input": [28, 28, 1], "labels": ["x", "o"]}).encode()),
    }


def make_board(tmp_path: Path, **options) -> FakeMicroPythonBoard:
    return FakeMicroPythonBoard(tmp_path / "board", **options)


def connect(board: FakeMicroPythonBoard, **options) -> RawRepl:
    repl = RawRepl(FakeBoardPort(board), write_pause=0, timeout=2, **options)
    repl.enter(connect_timeout=2)
    return repl


def on_board(board: FakeMicroPythonBoard, path: str) -> bytes:
    return (board.root / path.lstrip("/")).read_bytes()


# ---- raw REPL --------------------------------------------------------------------------------
def test_raw_repl_interrupts_main_py_and_runs_code(tmp_path):
    board = make_board(tmp_path)
    repl = connect(board)
    assert board.state == "raw"
    assert repl.exec("print(6 * 7)\nprint('x')") == "42\r\nx\r\n"
    repl.exec("counter = 1")
    assert repl.exec("counter += 1\nprint(counter)") == "2\r\n"  # globals persist, as on the board
    repl.exit()
    assert board.state == "friendly"


def test_remote_exception_is_reported(tmp_path):
    repl = connect(make_board(tmp_path))
    with pytest.raises(RemoteError, match="the board raised OSError") as caught:
        repl.exec("import uos\nuos.stat('/flash/missing.py')")
    assert caught.value.exception.startswith("OSError")
    with pytest.raises(RemoteError, match="ImportError: no module named 'numpy'"):
        repl.exec("import numpy")


def test_a_board_without_repl_fails_in_bounded_time(tmp_path):
    repl = RawRepl(FakeBoardPort(make_board(tmp_path, alive=False)), name="/dev/ttyUSB0", write_pause=0)
    started = time.monotonic()
    with pytest.raises(DeployFailed, match=r"no MicroPython raw REPL on /dev/ttyUSB0 within 1 s"):
        repl.enter(connect_timeout=1)
    assert time.monotonic() - started < 4


# ---- writing files ---------------------------------------------------------------------------
def test_put_writes_verifies_and_swaps_in(tmp_path):
    board = make_board(tmp_path)
    write(board.root / "flash" / "model.kmodel", b"old model")
    files = BoardFiles(connect(board))
    data = kmodel_v4(50_000)
    verified = files.put(data, "/flash/model.kmodel")
    assert on_board(board, "/flash/model.kmodel") == data
    assert verified.size == len(data)
    assert files.listing("/flash") == {"model.kmodel": len(data)}  # no temp file left behind


def test_files_bigger_than_a_hash_piece_are_checked_piece_by_piece(tmp_path, monkeypatch):
    monkeypatch.setattr(board_files, "HASH_PIECE", 4096)
    board = make_board(tmp_path)
    files = BoardFiles(connect(board))
    data = kmodel_v4(20_000)
    files.put(data, "/flash/big.kmodel")
    size, hashes = files.remote_hashes("/flash/big.kmodel")
    assert size == 20_000 and hashes == piece_hashes(data) and len(hashes) == 5


def test_corrupted_write_fails_the_hash_check_and_keeps_the_old_file(tmp_path):
    board = make_board(tmp_path, corrupt={"/flash/model.kmodel": 3})
    write(board.root / "flash" / "model.kmodel", b"previous good model")
    files = BoardFiles(connect(board))
    with pytest.raises(DeployFailed, match=r"/flash/model.kmodel failed its hash check after writing.*1 of 1 MiB"):
        files.put(kmodel_v4(30_000), "/flash/model.kmodel")
    assert on_board(board, "/flash/model.kmodel") == b"previous good model"
    assert files.listing("/flash") == {"model.kmodel": len(b"previous good model")}


def test_file_system_full_on_the_board(tmp_path):
    board = make_board(tmp_path, capacity={"flash": 40_000})
    files = BoardFiles(connect(board))
    with pytest.raises(DeployFailed, match=r"writing /flash/m.kmodel failed on the board: OSError: .*ENOSPC"):
        files.put(kmodel_v4(60_000), "/flash/m.kmodel")
    assert files.listing("/flash") == {}


def test_missing_sd_card(tmp_path):
    files = BoardFiles(connect(make_board(tmp_path, mounts=("flash",))))
    with pytest.raises(DeployFailed, match=r"/sd does not exist on the board \(is an SD card inserted"):
        files.free_bytes("/sd")


def test_programs_sent_are_micropython_1_9(tmp_path, runner_dir, local):
    """MaixPy-v1 predates f-strings: nothing deploy sends may use them."""
    board = make_board(tmp_path)
    plan = build_deploy_plan(runner_dir=runner_dir, kmodel=local["kmodel"], config=local["config"])
    deploy(plan, FakeBoardPort(board), write_pause=0, reset=True)
    assert board.programs
    for program in board.programs:
        assert not any(isinstance(node, ast.JoinedStr) for node in ast.walk(ast.parse(program)))


# ---- whole deploys -----------------------------------------------------------------------------
def test_deploy_end_to_end_with_reset(tmp_path, runner_dir, local):
    board = make_board(tmp_path, mounts=("flash", "sd"))
    plan = build_deploy_plan(target="sd", runner_dir=runner_dir, kmodel=local["kmodel"], config=local["config"])
    result = deploy(plan, FakeBoardPort(board), write_pause=0, reset=True)
    for item in plan.files:
        assert on_board(board, item.remote) == item.content
    assert sorted(result.listing) == ["digits.kmodel", "k210_config.py", "k210runner.py", "k210wire.py", "main.py"]
    assert board.resets == 1 and result.reset


def test_not_enough_space_is_found_before_writing(tmp_path, runner_dir, local):
    board = make_board(tmp_path, capacity={"flash": 50_000})
    plan = build_deploy_plan(runner_dir=runner_dir, kmodel=local["kmodel"])
    with pytest.raises(DeployFailed, match="not enough space in /flash: the deploy needs up to"):
        deploy(plan, FakeBoardPort(board), write_pause=0)
    assert not any("'wb'" in program for program in board.programs)


def test_cli_deploy_over_a_socket_url(tmp_path, runner_dir, local, capsys):
    board = make_board(tmp_path)
    with serve_over_tcp(board) as url:
        argv = [
            "deploy",
            "--port",
            url,
            "--runner-dir",
            str(runner_dir),
            str(local["kmodel"]),
            "--config",
            str(local["config"]),
            "--reset",
            "--write-pause",
            "0",
        ]
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"deployed and verified 5 file(s) via {url}" in out and "board reset, main.py starting" in out
    namespace: dict = {}
    exec(on_board(board, "/flash/k210_config.py").decode(), namespace)
    # the kmodel's header fills in what the JSON leaves out: its version, size and tensors (issue 17.5)
    assert namespace["CONFIG"] == {"input": [28, 28, 1], "labels": ["x", "o"], "model": "/flash/digits.kmodel",
                                   "model_version": 4, "model_size": 60_000, "model_inputs": [(4, (1, 1, 28, 28))]}
    assert on_board(board, "/flash/digits.kmodel") == local["kmodel"].read_bytes()
    assert board.resets == 1


def test_cli_reports_a_failed_hash_check_in_one_line(tmp_path, runner_dir, capsys):
    board = make_board(tmp_path, corrupt={"/flash/k210wire.py": 0})
    with serve_over_tcp(board) as url:
        assert main(["deploy", "--port", url, "--runner-dir", str(runner_dir), "--write-pause", "0"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("k210 deploy: error: /flash/k210wire.py failed its hash check") and err.count("\n") == 1
    assert on_board(board, "/flash/main.py") == MAIN_PY.encode()  # written before the bad one, and verified
    assert not (board.root / "flash" / "k210wire.py").exists()


def test_cli_dry_run_json(runner_dir, local, capsys):
    assert (
        main(["deploy", "--dry-run", "--json", "--runner-dir", str(runner_dir), str(local["kmodel"])]) == 0
    )
    report = json.loads(capsys.readouterr().out)["result"]
    remotes = [f["remote"] for f in report["plan"]["files"]]
    assert remotes == ["/flash/main.py", "/flash/k210runner.py", "/flash/k210wire.py", "/flash/digits.kmodel",
                       "/flash/k210_config.py"]
    assert "no --config" in report["plan"]["warnings"][0] and "model card" in report["plan"]["warnings"][0]


# ---- plan checks ------------------------------------------------------------------------------
def test_plan_refuses_what_the_board_could_not_use(tmp_path, runner_dir, local):
    with pytest.raises(BadInputError, match="digits5.kmodel is v5, which Sipeed MaixPy-v1"):
        build_deploy_plan(runner_dir=runner_dir, kmodel=local["v5"])
    canmv = build_deploy_plan(runner="canmv", runner_dir=runner_dir, kmodel=local["v5"])
    assert [f.remote for f in canmv.files[-2:]] == ["/flash/digits5.kmodel", "/flash/k210_config.py"]
    broken = write(tmp_path / "broken" / "main.py", b"import k210wire\n")
    write(broken.parent / "k210wire.py", b"def main(:\n")
    with pytest.raises(BadInputError, match="k210wire.py has a syntax error at line 1"):
        build_deploy_plan(runner_dir=broken.parent)
    with pytest.raises(BadInputError, match="runner file main.py is missing"):
        build_deploy_plan(runner_dir=tmp_path)
    bad_json = write(tmp_path / "bad.json", b"{nope")
    with pytest.raises(BadInputError, match="config bad.json is not valid JSON"):
        build_deploy_plan(runner_dir=runner_dir, config=bad_json)
    with pytest.raises(BadInputError, match="config list.json must hold a JSON object"):
        build_deploy_plan(runner_dir=runner_dir, config=write(tmp_path / "list.json", b"[1, 2]"))
    with pytest.raises(BadInputError, match="does not assign CONFIG"):
        build_deploy_plan(runner_dir=runner_dir, config=write(tmp_path / "settings.py", b"BAUD = 9600\n"))
    with pytest.raises(BadInputError, match="same name on the board: main.py"):
        build_deploy_plan(runner_dir=runner_dir, config=local["config"], config_name="main.py")
    with pytest.raises(BadInputError, match="nothing to deploy"):
        build_deploy_plan(include_runner=False)
    with pytest.raises(BadInputError, match="needs a MicroPython firmware"):
        build_deploy_plan(runner="c", runner_dir=runner_dir)


def test_runner_files_come_from_the_installed_firmware_package():
    base = packaged_runner_dir()
    assert base == Path(__file__).resolve().parents[1] / "firmware" / "maixpy"
    names = [path.name for path in runner_files(base)]
    assert names[0] == "main.py" and {"k210wire.py", "k210runner.py"} <= set(names)
    assert "__init__.py" not in names and "k210_config.py" not in names


def test_runner_files_follow_main_py_imports(runner_dir):
    assert [path.name for path in runner_files(runner_dir)] == ["main.py", "k210runner.py", "k210wire.py"]


def test_python_config_is_copied_as_the_config_module(tmp_path, runner_dir):
    settings = write(tmp_path / "mine.py", b"CONFIG = {'model': 0x300000, 'model_size': 1234}\n")
    plan = build_deploy_plan(runner_dir=runner_dir, config=settings)
    assert plan.files[-1].remote == "/flash/k210_config.py" and plan.files[-1].content == settings.read_bytes()


def test_open_port_urls():
    port = open_port("loop://")
    assert port.is_open and port.dtr is False and port.rts is False
    port.close()
    with pytest.raises(BadInputError, match="cannot open serial port /dev/ttyNOPE9"):
        open_port("/dev/ttyNOPE9")


def test_the_real_runner_deploys_onto_the_fake_board(tmp_path):
    board = make_board(tmp_path)
    plan = build_deploy_plan()  # the installed firmware/maixpy runner
    deploy(plan, FakeBoardPort(board), write_pause=0)
    for item in plan.files:
        assert on_board(board, item.remote) == item.local.read_bytes()
    assert board.state == "friendly"  # left at the REPL: no --reset
