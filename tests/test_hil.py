"""`k210 hil`: handshake diagnoses, model checks, pipelined streaming, faults, resume, sharding, reports."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hil_support import FakePort, tiny_models

from k210.core.errors import BadInputError, ToolFailure
from k210.firmware import k210wire as w
from k210.host.hil.handlers import virtual_board
from k210.host.hil.journal import BoardResult, Journal
from k210.host.hil.messages import ModelInfo, TensorDesc
from k210.host.hil.model import KModel, identify
from k210.host.hil.ports import open_port
from k210.host.hil.report import TIMING_KEYS, link_figures
from k210.host.hil.run import HilConfig, run_hil
from k210.host.hil.session import BoardSession

PNG = b"\x89PNG\r\n\x1a\n"
XO_INPUT = ((w.DT_UINT8, (1, 28, 28, 1)),)


# -- what is on the port when it is not a runner (fast: no model needed) ------------------------------


def _diagnosis(url: str, timeout: float = 0.6) -> str:
    session = BoardSession(open_port(url, 1_500_000), connect_timeout=timeout)
    try:
        with pytest.raises(ToolFailure) as caught:  # nothing answers as a board would: exit 3
            session.connect()
    finally:
        session.port.close()
    return str(caught.value)


def test_silent_port_says_so():
    port = FakePort()
    try:
        message = _diagnosis(port.path)
    finally:
        port.close()
    assert message.startswith(f"no answer from {port.path} within 0.6 s") and "--baud 1500000" in message


def test_repl_on_the_port_is_wrong_firmware():
    port = FakePort(answer=b"\r\nMicroPython v0.6.2 on 2021-01-01; Sipeed_M1 with kendryte-k210\r\n>>> ")
    try:
        message = _diagnosis(port.path)
    finally:
        port.close()
    assert "answers with a MicroPython prompt, not the k210-deploy runner" in message and "k210 deploy" in message


def test_other_bytes_and_loopbacks_and_missing_ports():
    port = FakePort(answer=b"\xff\xfe garbage at the wrong baud rate \x81")
    try:
        assert "bytes that are not k210-deploy frames" in _diagnosis(port.path)
    finally:
        port.close()
    assert "sends back what the host writes: a loopback" in _diagnosis("loop://")
    with pytest.raises(BadInputError, match="cannot open port /dev/ttyNOPE.*no board there"):
        open_port("/dev/ttyNOPE", 115200)


def test_model_identity_by_hash_or_tensors():
    stub = KModel("m.kmodel", b"x", "ab" * 32, 5, XO_INPUT, ((w.DT_FLOAT32, (1, 2)),))

    def info(sha: str, inputs=XO_INPUT, loaded=True) -> ModelInfo:
        return ModelInfo(loaded, 5, 1, sha, "flash:0x300000", tuple(TensorDesc(d, s) for d, s in inputs),
                         (TensorDesc(w.DT_FLOAT32, (1, 2)),))

    assert identify(info("ab" * 32), stub) == "sha256"
    assert identify(info("cd" * 32), stub) == ""  # the board knows its hash: another model
    assert identify(info("0" * 64), stub) == "shapes"
    assert identify(info("0" * 64, ((w.DT_FLOAT32, (1, 784)),)), stub) == ""
    assert identify(info("ab" * 32, loaded=False), stub) == ""


# -- journal and figures (fast) -----------------------------------------------------------------------


def test_journal_resume_drops_a_torn_line_and_refuses_another_run(tmp_path):
    from k210.host.hil.messages import Tensor

    identity = {"kmodel_sha256": "ab", "dataset": "xo", "split": "test", "seed": 0, "count": 3}
    path = tmp_path / "j.jsonl"
    journal = Journal.start(path, identity)
    journal.record(BoardResult(0, [Tensor(w.DT_FLOAT32, (1, 2), b"\x00" * 8)], 123, "b0"))
    journal.record_stats({"segment": 0, "seconds": 1.0, "boards": []})
    journal.close()
    with open(path, "a") as f:
        f.write('{"i": 1, "us": 9, "out": [{"dtyp')  # killed mid-line
    resumed, results, segments = Journal.resume(path, identity)
    resumed.record(BoardResult(1, [Tensor(w.DT_FLOAT32, (1, 2), b"\x01" * 8)], 5, "b0"))
    resumed.close()
    assert list(results) == [0] and results[0].micros == 123 and results[0].outputs[0].data == b"\x00" * 8
    assert segments == [{"segment": 0, "seconds": 1.0, "boards": []}]
    _, again, _ = Journal.resume(path, identity)
    assert sorted(again) == [0, 1]
    with pytest.raises(BadInputError, match="belongs to another run .kmodel_sha256"):
        Journal.resume(path, {**identity, "kmodel_sha256": "cd"})
    with pytest.raises(BadInputError, match="no journal"):
        Journal.resume(tmp_path / "none.jsonl", identity)


def test_link_figures_count_the_busier_direction_over_line_capacity():
    board = {"seconds": 2.0, "baud": 1_000_000, "bytes_to_board": 180_000, "bytes_from_board": 20_000,
             "images": 200, "retries": 3, "resets": 1}
    figures = link_figures([{"segment": 0, "seconds": 2.0, "boards": [board]},
                            {"segment": 1, "seconds": 1.0, "boards": [{**board, "seconds": 1.0, "images": 100,
                                                                     "bytes_to_board": 90_000}]}])
    assert figures["link_utilisation"] == pytest.approx(270_000 / (3.0 * 100_000))
    assert figures["images_per_s"] == pytest.approx(100.0)
    assert (figures["retries"], figures["resets"], figures["segments"]) == (6, 2, 2)


# -- real runs on virtual boards (slow: a model is built, boards are started) -------------------------


def _outputs(journal: Path) -> dict[int, str]:
    lines = journal.read_text().splitlines()[1:]
    return {e["i"]: json.dumps(e["out"]) for e in map(json.loads, lines) if "i" in e}


@pytest.mark.slow
def test_cli_hil_on_a_virtual_board_writes_json_report_and_journal(cli, tmp_path, monkeypatch):
    m = tiny_models()
    scratch = tmp_path / "tmp"  # the run's temporary files, boards included: none may be left behind
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "hil.json"
    r = cli("hil", m["kmodel_a"], "--virtual", "--upload", "--reference", m["keras_a"], "--dataset", "xo",
            "--limit", "60", "--json-out", out, "--report", tmp_path / "rep", "--min-agreement", "0")
    assert r.code == 0, r.err
    envelope = json.loads(out.read_text())
    assert envelope["command"] == "hil" and envelope["passed"] is True
    assert envelope == json.loads((tmp_path / "rep" / "report.json").read_text())
    report = envelope["result"]
    for key in ("count", "images_per_s", "link_utilisation", "retries", "resets", "board_accuracy"):
        assert key in report
    assert report["count"] == 60 and report["resets"] == 0  # timer resends may happen on a busy machine
    assert report["board_vs_simulator"]["agreement"] == 1.0 and report["board_vs_simulator"]["bit_identical"] == 1.0
    assert report["board_vs_reference"]["agreement"] > 0.9 and "max_abs_error" in report["board_vs_reference"]
    assert report["simulator_vs_reference"]["agreement"] == report["board_vs_reference"]["agreement"]
    assert report["latency_us"]["median"] > 0 and report["latency_us"]["p90"] >= report["latency_us"]["median"]
    assert set(report["confusion"]) == {"board", "simulator", "reference"}
    board = report["boards"][0]
    assert board["identified_by"] == "upload" and board["max_in_flight"] >= 3  # pipelined
    assert board["window"] <= board["rx_window"]
    for name in ("confusion.png", "disagreements.png", "errors.png", "latency.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:8] == PNG
    assert len(_outputs(tmp_path / "rep" / "journal.jsonl")) == 60
    assert "board vs simulator  1.0000" in r.out and "PASS" in r.out
    assert list(scratch.iterdir()) == [], "temporary files left behind"


@pytest.mark.slow
def test_cli_errors_are_one_line(cli, tmp_path):
    m = tiny_models()
    silent = FakePort()
    try:
        r = cli("hil", m["kmodel_a"], "--port", silent.path, "--dataset", "xo", "--connect-timeout", "0.5")
    finally:
        silent.close()
    assert r.code == 3 and "no answer from" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("hil", m["kmodel_a"], "--dataset", "xo")
    assert r.code == 2 and "which board?" in r.err
    for upload in (["--upload"], []):  # sent, or "flashed" and refused by MaixPy-v1's KPU.load at boot
        r = cli("hil", m["kmodel_a"], "--virtual", "--firmware", "maixpy", *upload, "--dataset", "xo")
        assert r.code == 2 and "loads v3/v4" in r.err and "is kmodel v5 (kmodel v5 needs CanMV" in r.err, r.err
    r = cli("hil", m["kmodel_a"], "--port", "loop://", "--dataset", "xo", "--faults", "drop=0.1")
    assert r.code == 2 and "--faults applies to virtual boards" in r.err


@pytest.mark.slow
def test_wrong_model_on_the_board_is_refused_unless_uploaded(cli, tmp_path):
    m = tiny_models()
    handler = virtual_board()
    url = handler.start()
    try:
        session = BoardSession(open_port(url, 1_500_000), connect_timeout=10)
        session.connect()
        session.upload(KModel.from_bytes("b", m["kmodel_b"].read_bytes()))
        session.port.close()
        r = cli("hil", m["kmodel_a"], "--port", url, "--dataset", "xo", "--no-reference", "--limit", "20")
        assert r.code == 2 and "the board runs another model (sha256" in r.err and "Pass --upload" in r.err
        r = cli("hil", m["kmodel_a"], "--port", url, "--dataset", "xo", "--no-reference", "--limit", "20",
                "--upload", "--json-out", tmp_path / "h.json")
        assert r.code == 0, r.err
        assert json.loads((tmp_path / "h.json").read_text())["result"]["boards"][0]["identified_by"] == "upload"
    finally:
        handler.stop()


@pytest.mark.slow
def test_faulty_line_and_resets_give_the_clean_outputs(tmp_path):
    m = tiny_models()
    common = {"kmodel": str(m["kmodel_a"]), "virtual": True, "dataset": "xo", "limit": 80, "no_reference": True,
              "workers": 1}
    clean = run_hil(HilConfig(**common, journal=str(tmp_path / "clean.jsonl")))
    faulty = run_hil(HilConfig(**common, upload=True, journal=str(tmp_path / "faulty.jsonl"), fault_seed=5,
                               faults="corrupt=3e-4,drop=3e-4,dup=1e-4,stall=1e-4,stall_ms=5,reset=200,reset_at=90"))
    # A clean line may still see a few timer resends when the machine is busy (CI), so only the faulty run's
    # own damage is asserted: it must have resent frames and met the board's resets.
    assert clean["resets"] == 0 and faulty["retries"] > 0 and faulty["resets"] > 0
    # Whether a reset lands mid-stream (model sent again) or inside the first upload (that upload starts over)
    # depends on frame sizes the harness adapts to the line; either way the outputs must equal the clean run's.
    assert faulty["link"]["uploads"] >= 1
    assert _outputs(tmp_path / "faulty.jsonl") == _outputs(tmp_path / "clean.jsonl")
    assert faulty["board_vs_simulator"]["bit_identical"] == 1.0


def test_a_board_that_resets_faster_than_an_upload_is_a_clear_error():
    """Each reset wipes a partly sent model: the harness must give up and say what to do, not resend for ever."""
    from k210.core.errors import ToolFailure

    m = tiny_models()
    config = HilConfig(kmodel=str(m["kmodel_a"]), virtual=True, dataset="xo", limit=4, no_reference=True,
                       workers=1, upload=True, fault_seed=3, faults="reset=2")
    with pytest.raises(ToolFailure, match="reset .* times while .* was uploading; flash the model instead"):
        run_hil(config)


@pytest.mark.slow
def test_resume_after_a_kill_gives_the_same_report(tmp_path):
    m = tiny_models()
    args = [str(m["kmodel_a"]), "--virtual", "--dataset", "xo", "--limit", "90", "--no-reference"]
    whole = run_hil(HilConfig(kmodel=args[0], virtual=True, dataset="xo", limit=90, no_reference=True, workers=1))
    journal = tmp_path / "rep" / "journal.jsonl"
    # A slow line (115200 baud: ~14 images/s) so that the kill lands mid-run.
    proc = subprocess.Popen([sys.executable, "-m", "k210.host.cli", "hil", *args, "--baud", "115200",
                             "--report", str(tmp_path / "rep")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not journal.exists() or len(_outputs(journal)) < 15
                                           or '"segment"' not in journal.read_text()):  # its figures, too
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(_outputs(journal))
    assert 15 <= done_before < 90
    resumed = run_hil(HilConfig(kmodel=args[0], virtual=True, dataset="xo", limit=90, no_reference=True, workers=1,
                                report_dir=str(tmp_path / "rep"), resume=True))
    assert resumed["link"]["segments"] == 2
    same = {k: v for k, v in whole.items() if k not in TIMING_KEYS}
    assert {k: v for k, v in resumed.items() if k not in TIMING_KEYS} == same
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["result"]["count"] == 90
    # Nothing left to do: a second resume gives the very same report, link figures included, without a board.
    again = run_hil(HilConfig(kmodel=args[0], dataset="xo", limit=90, no_reference=True, workers=1,
                              report_dir=str(tmp_path / "rep"), resume=True))
    assert again == resumed


@pytest.mark.slow
def test_two_boards_share_the_images():
    m = tiny_models()
    report = run_hil(HilConfig(kmodel=str(m["kmodel_a"]), virtual=True, boards=2, dataset="xo", limit=120,
                               no_reference=True, workers=1))
    shares = [b["images"] for b in report["boards"]]
    assert len(shares) == 2 and min(shares) > 10 and sum(shares) == 120
    assert len({b["port"] for b in report["boards"]}) == 2
    assert report["board_vs_simulator"]["bit_identical"] == 1.0


@pytest.mark.slow
def test_pipelining_never_overflows_the_boards_ring():
    m = tiny_models()
    kmodel = KModel.from_bytes("a", m["kmodel_a"].read_bytes())
    handler = virtual_board(kmodel=str(m["kmodel_a"]))
    try:
        session = BoardSession(open_port(handler.start(), 1_500_000), connect_timeout=10)
        session.connect()
        session.ensure_model(kmodel, upload=False)
        images = iter(range(150))
        got: dict[int, int] = {}
        rng = np.random.default_rng(0)
        payloads = [rng.integers(0, 256, 784, dtype=np.uint8).tobytes() for _ in range(150)]
        session.stream(lambda: next(images, None), lambda back: None, payloads.__getitem__,
                       lambda i, outputs, us: got.__setitem__(i, us))
        assert sorted(got) == list(range(150))
        # Retries can come from the host's reply timer on a busy CI machine; an overflow shows as rx_dropped.
        assert session.stats.max_in_flight >= 3
        hello = session.connect()
        assert hello.rx_dropped == 0  # the runner never saw a damaged frame: the ring never overflowed
        session.port.close()
    finally:
        handler.stop()


@pytest.mark.slow
def test_the_c_runner_stands_behind_the_same_interface():
    from boardfakes.arith_model import arith_outputs, make_arith_kmodel
    from boardfakes.links import build_c, require_tool

    from k210.host.hil.handlers import c_runner

    require_tool("gcc")
    handler = c_runner(build_c("host") / "k210_runner_host")
    try:
        session = BoardSession(open_port(handler.start(), 1_500_000), connect_timeout=10)
        assert session.connect().firmware == "k210-deploy-c"
        data = make_arith_kmodel(version=5, input_len=784)
        kmodel = KModel("arith.kmodel", data, hashlib.sha256(data).hexdigest(), 5, ((w.DT_UINT8, (784,)),),
                        ((w.DT_UINT8, (784,)), (w.DT_FLOAT32, (1,))))
        assert session.ensure_model(kmodel, upload=True) == "upload"
        rng = np.random.default_rng(1)
        images = [rng.integers(0, 256, 784, dtype=np.uint8).tobytes() for _ in range(60)]
        todo = iter(range(len(images)))
        got: dict[int, list] = {}
        session.stream(lambda: next(todo, None), lambda back: None, images.__getitem__,
                       lambda i, outputs, us: got.__setitem__(i, outputs))
        for i, outputs in got.items():
            out0, total = arith_outputs(images[i], 3, 7)
            assert outputs[0].data == out0 and outputs[1].to_numpy()[0] == total
        assert len(got) == 60 and session.stats.max_in_flight >= 3
        session.port.close()
    finally:
        handler.stop()
