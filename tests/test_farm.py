"""Board farm: labgrid places as boards (`k210 hil --place`), the hardware map (--boards FILE, K210_*),
and the pytest plugin, against a real labgrid coordinator and exporter (ser2net, RFC 2217) on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from farm_support import Farm, require_farm_tools
from hil_support import tiny_models

from k210.core.errors import BadInputError, ToolFailure
from k210.host.farm.boardmap import Board, boards_for, common_baud, load_boards, reset_boards
from k210.host.farm.broker import match_places, serial_url

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "test_model_on_board.py"
TAGS = {"board": "k210"}


def _outputs(journal: Path) -> dict[int, str]:
    lines = journal.read_text().splitlines()[1:]
    return {e["i"]: json.dumps(e["out"]) for e in map(json.loads, lines) if "i" in e}


def _results(journal: Path) -> int:
    try:
        return sum(1 for line in journal.read_text().splitlines()[1:] if line.startswith('{"i"'))
    except FileNotFoundError:
        return 0


def _hil(*args: object) -> list[str]:
    return [sys.executable, "-m", "k210.host.cli", "hil", *map(str, args)]


class Relay:
    """A power relay with labgrid's `rest` interface on loopback: GET says 0/1, PUT 0/1 switches; every PUT kept."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        relay = self
        self.state, self.puts = b"1", []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._reply(relay.state)

            def do_PUT(self) -> None:  # noqa: N802
                relay.state = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                relay.puts.append(relay.state)
                self._reply(b"")

            def _reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/relay/{{index}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def relay():
    running = Relay()
    yield running
    running.close()


@pytest.fixture(scope="module")
def farm(relay):
    require_farm_tools()
    with Farm({"k210-a": TAGS, "k210-b": TAGS}, kmodel=str(tiny_models()["kmodel_a"]),
              power={"k210-a": relay.url}) as running:  # k210-a has a power switch, k210-b has none
        yield running


# -- fast: no boards -------------------------------------------------------------------------------------


def test_places_match_by_name_glob_alias_or_tags():
    class P:
        def __init__(self, tags=None, aliases=()):
            self.tags, self.aliases = tags or {}, set(aliases)

    places = {"k210-a": P({"board": "k210", "lab": "1"}), "k210-b": P({"board": "k210"}, ["desk"]),
              "esp-1": P({"board": "esp32"})}
    assert match_places(places, "k210-a") == ["k210-a"]
    assert match_places(places, "k210-*") == ["k210-a", "k210-b"]
    assert match_places(places, "board=k210") == ["k210-a", "k210-b"]
    assert match_places(places, "board=k210,lab=1") == ["k210-a"]
    assert match_places(places, "desk") == ["k210-b"]
    assert match_places(places, "k210") == []  # no substring guesses: a name, a glob or tags
    assert serial_url("NetworkSerialPort", {"host": "lab2", "port": 4000}) == "rfc2217://lab2:4000?ign_set_control"
    assert serial_url("NetworkSerialPort", {"host": "lab2", "port": 4000, "protocol": "raw"}) == "socket://lab2:4000"
    assert serial_url("NetworkSerialPort", {"host": "lab2", "port": None}) is None  # ser2net not up yet
    assert serial_url("USBSerialPort", {"port": "/dev/ttyUSB3"}) == "/dev/ttyUSB3"


def test_board_map_reads_boards_and_refuses_bad_ones_in_one_line(tmp_path):
    good = tmp_path / "boards.yaml"
    good.write_text("boards:\n  - {name: desk-a, port: /dev/ttyUSB0, baud: 921600, firmware: canmv}\n"
                    "  - port: socket://lab:4000\n    firmware: maixpy\n    reset: echo reset\n")
    boards = load_boards(good)
    assert boards == [Board("desk-a", "/dev/ttyUSB0", 921600, "canmv", None),
                      Board("socket://lab:4000", "socket://lab:4000", None, "maixpy", "echo reset")]
    assert [b.name for b in boards_for(boards, "canmv", "f")] == ["desk-a"]
    assert common_baud(boards, 1_500_000) == 921600
    with pytest.raises(BadInputError, match="no board runs canmv"):
        boards_for(boards[1:], "canmv", "f")
    with pytest.raises(BadInputError, match="different baud rates .115200, 921600"):
        common_baud([*boards, Board("x", "/dev/x", 115200)], 1_500_000)
    cases = {"": "expected a list of boards", "[1]": "board 1 is not a mapping", "[{baud: 9}]": "board 1 has no port",
             "[{port: /dev/a, speed: 9}]": "unknown key 'speed'", "[{port: /dev/a, baud: fast}]": "baud 'fast' is not",
             "[{port: /dev/a, baud: 9}]": "must be a whole number from 300",
             "[{port: /dev/a, firmware: esp}]": "'esp' is not",
             "[{port: /dev/a}, {port: /dev/a}]": "two boards have the port", "[{port: [}": "not YAML at line 1"}
    for text, message in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(BadInputError, match=message) as caught:
            load_boards(bad)
        assert "\n" not in str(caught.value) and str(bad) in str(caught.value)
    with pytest.raises(BadInputError, match="no such file"):
        load_boards(tmp_path / "none.yaml")
    marker = tmp_path / "was-reset"
    reset_boards([Board("a", "/dev/a", reset=f"touch {marker}")])
    assert marker.exists()
    with pytest.raises(ToolFailure, match="board b: its reset command exited with 1"):
        reset_boards([Board("b", "/dev/b", reset="false")])


def test_no_coordinator_is_a_one_line_board_failure(cli, tmp_path):
    require_farm_tools()
    from farm_support import free_port

    kmodel = tmp_path / "m.kmodel"
    kmodel.write_bytes(b"LDMK" + b"\x05\x00\x00\x00" + b"\x00" * 64)
    r = cli("hil", kmodel, "--place", "k210-a", "--coordinator", f"127.0.0.1:{free_port()}", "--dataset", "xo")
    assert r.code == 3 and "cannot reach the labgrid coordinator at 127.0.0.1:" in r.err, r.err
    assert "Connection refused" in r.err and len(r.err.strip().splitlines()) == 1, r.err  # gRPC's reason, one line


# -- labgrid places as boards -------------------------------------------------------------------------


@pytest.mark.slow
def test_places_shard_the_images_as_ports_do_bit_for_bit(farm, cli, tmp_path):
    m = tiny_models()
    common = [m["kmodel_a"], "--dataset", "xo", "--limit", "400", "--no-reference", "--workers", "1"]
    r = cli("hil", *common, "--port", farm.ptys["k210-a"], "--port", farm.ptys["k210-b"],
            "--journal", tmp_path / "ports.jsonl")
    assert r.code == 0, r.err
    r = cli("hil", *common, "--place", "k210-*", "--coordinator", farm.address, "--journal", tmp_path / "places.jsonl",
            "--json-out", tmp_path / "places.json")
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "places.json").read_text())["result"]
    assert sorted(b["images"] > 20 for b in report["boards"]) == [True, True] and report["count"] == 400
    assert all(b["port"].startswith("rfc2217://127.0.0.1:") for b in report["boards"])  # the exporter's ser2net
    by_place = _outputs(tmp_path / "places.jsonl")
    assert len(by_place) == 400 and by_place == _outputs(tmp_path / "ports.jsonl")
    assert report["board_vs_simulator"]["bit_identical"] == 1.0
    assert farm.holder("k210-a") is None and farm.holder("k210-b") is None  # released at the end


@pytest.mark.slow
def test_a_held_place_is_refused_naming_its_holder_or_waited_for(farm, cli, tmp_path):
    m = tiny_models()
    common = [m["kmodel_a"], "--dataset", "xo", "--limit", "30", "--no-reference", "--workers", "1",
              "--coordinator", farm.address]
    assert farm.client("-p", "k210-a", "acquire", user="alice").returncode == 0
    try:
        r = cli("hil", *common, "--place", "k210-a")
        assert r.code == 3 and len(r.err.strip().splitlines()) == 1, r.err
        assert "place k210-a is held by " in r.err and "/alice" in r.err and "--place-timeout" in r.err
        r = cli("hil", *common, "--place", "board=k210", "--json-out", tmp_path / "free.json")  # takes the free one
        assert r.code == 0, r.err
        boards = json.loads((tmp_path / "free.json").read_text())["result"]["boards"]
        assert len(boards) == 1 and boards[0]["images"] == 30
        assert farm.holder("k210-b") is None
        release = threading.Timer(3.0, farm.client, ("-p", "k210-a", "release"), {"user": "alice"})
        started = time.monotonic()
        release.start()
        r = cli("hil", *common, "--place", "k210-a", "--place-timeout", "120")
        waited = time.monotonic() - started
        release.join()
        assert r.code == 0, r.err
        assert "waiting up to 120 s: place k210-a is held by" in r.err and waited >= 3.0
    finally:
        farm.client("-p", "k210-a", "release", user="alice")
    assert farm.holder("k210-a") is None


@pytest.mark.slow
def test_places_are_released_when_hil_is_interrupted_or_killed(farm, tmp_path):
    m = tiny_models()
    for sig in (signal.SIGINT, signal.SIGKILL):
        journal = tmp_path / f"{sig.name}.jsonl"
        proc = subprocess.Popen(_hil(m["kmodel_a"], "--place", "k210-a", "--place", "k210-b", "--coordinator",
                                     farm.address, "--dataset", "xo", "--limit", "800", "--no-reference",
                                     "--workers", "1", "--journal", journal),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not (farm.holder("k210-a") and farm.holder("k210-b")) and proc.poll() is None:  # held while it runs
            assert time.monotonic() < deadline, "the places were never held"
        while _results(journal) < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1].decode()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGKILL:
            assert _results(journal) < 800  # killed mid-run (Ctrl-C lets the boards' threads end their work)
        deadline = time.monotonic() + 30  # a killed run's broker releases them as its stdin closes
        while (farm.holder("k210-a") or farm.holder("k210-b")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert farm.holder("k210-a") is None and farm.holder("k210-b") is None, err.decode()


@pytest.mark.slow
def test_a_board_that_dies_mid_run_leaves_its_images_to_the_other_place(tmp_path):
    require_farm_tools()
    m = tiny_models()
    # Its own farm: one board is killed. A 115200-baud line (~14 images/s) so that the kill lands mid-run.
    with Farm({"k210-a": TAGS, "k210-b": TAGS}, kmodel=str(m["kmodel_a"]), baud=115200) as farm:
        journal = tmp_path / "j.jsonl"
        proc = subprocess.Popen(_hil(m["kmodel_a"], "--place", "k210-*", "--coordinator", farm.address,
                                     "--dataset", "xo", "--limit", "150", "--no-reference", "--workers", "1",
                                     "--silence-timeout", "1", "--allow-lost-boards", "--journal", journal,
                                     "--json-out", tmp_path / "out.json"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _results(journal) < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        farm.boards["k210-a"].proc.kill()
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()
        report = json.loads((tmp_path / "out.json").read_text())["result"]
        assert report["count"] == 150 and report["board_vs_simulator"]["bit_identical"] == 1.0
        assert len(_outputs(journal)) == 150
        shares = sorted(b["images"] for b in report["boards"])
        assert len(shares) == 2 and shares[0] < 75 < shares[1]  # the dead board's images went to the other
        assert "released place k210-a: its board stopped answering" in err.decode()
        assert farm.holder("k210-a") is None and farm.holder("k210-b") is None


@pytest.mark.slow
def test_power_cycle_drives_the_places_power_switch(farm, relay, cli, tmp_path, caplog):
    m = tiny_models()
    relay.puts.clear()
    r = cli("hil", m["kmodel_a"], "--place", "k210-*", "--coordinator", farm.address, "--power-cycle",
            "--dataset", "xo", "--limit", "30", "--no-reference", "--workers", "1")
    assert r.code == 0, r.err
    assert relay.puts == [b"0", b"1"]  # off, then on: labgrid's NetworkPowerDriver.cycle, k210-a only
    assert "place k210-b has no power driver: not power-cycled" in caplog.text  # the CLI logs it to stderr


@pytest.mark.slow
def test_a_labgrid_environment_names_local_boards_without_a_coordinator(farm, cli, tmp_path):
    m = tiny_models()
    env = tmp_path / "env.yaml"  # labgrid's environment format, as its pytest plugin takes with --lg-env
    env.write_text(f"targets:\n  desk-a:\n    resources:\n      RawSerialPort:\n        port: {farm.ptys['k210-a']}\n"
                   "        speed: 1500000\n")
    common = [m["kmodel_a"], "--dataset", "xo", "--limit", "30", "--no-reference", "--workers", "1", "--lg-env", env]
    r = cli("hil", *common, "--place", "desk-*", "--json-out", tmp_path / "env.json")
    assert r.code == 0, r.err
    assert [b["port"] for b in json.loads((tmp_path / "env.json").read_text())["result"]["boards"]] == [
        farm.ptys["k210-a"]]
    r = cli("hil", *common, "--place", "lab-*")
    assert r.code == 2 and "--place lab-* names no target of" in r.err and "(targets: desk-a)" in r.err


# -- the hardware map and the environment defaults ------------------------------------------------------


@pytest.mark.slow
def test_a_board_map_and_k210_port_need_no_long_command_lines(farm, cli, tmp_path, monkeypatch):
    m = tiny_models()
    marker = tmp_path / "reset-ran"
    (tmp_path / "boards.yaml").write_text(
        f"- {{name: a, port: {farm.ptys['k210-a']}, firmware: canmv, reset: touch {marker}}}\n"
        f"- {{name: b, port: {farm.ptys['k210-b']}, firmware: canmv}}\n"
        "- {name: old, port: /dev/ttyNOPE, firmware: maixpy}\n")  # not for a v5 kmodel: left out
    common = [m["kmodel_a"], "--dataset", "xo", "--limit", "40", "--no-reference", "--workers", "1"]
    r = cli("hil", *common, "--boards", tmp_path / "boards.yaml", "--json-out", tmp_path / "map.json")
    assert r.code == 0, r.err
    assert len(json.loads((tmp_path / "map.json").read_text())["result"]["boards"]) == 2 and marker.exists()
    monkeypatch.setenv("K210_PORT", farm.ptys["k210-b"])
    monkeypatch.setenv("K210_BAUD", "921600")
    r = cli("hil", *common, "--json-out", tmp_path / "env.json")
    assert r.code == 0, r.err
    board = json.loads((tmp_path / "env.json").read_text())["result"]["boards"][0]
    assert board["port"] == farm.ptys["k210-b"] and board["baud"] == 921600
    monkeypatch.setenv("K210_BAUD", "fast")
    r = cli("hil", *common)
    assert r.code == 2 and "K210_BAUD: baud 'fast' is not a number" in r.err


# -- the pytest plugin -----------------------------------------------------------------------------------


def _pytest(tmp_path: Path, name: str, *options: str, ci: bool = False) -> tuple[int, str, str]:
    """The example test file in a pytest of its own, as a user runs it; exit code, output, JUnit XML."""
    xml = tmp_path / f"{name}.xml"
    env = {**os.environ, "K210_KMODEL": str(tiny_models()["kmodel_a"]), "CI": "true" if ci else ""}
    env.pop("K210_PORT", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                           str(EXAMPLE), *options], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr, xml.read_text() if xml.exists() else ""


@pytest.mark.slow
def test_the_pytest_plugin_runs_model_tests_on_a_virtual_board_and_a_place(farm, tmp_path):
    code, out, xml = _pytest(tmp_path, "none")
    assert code == 0 and "2 skipped" in out and "no K210 board: pass --k210-port" in out, out
    code, out, _ = _pytest(tmp_path, "ci", ci=True)
    assert code == 1 and "CI=true makes a test without its board a failure" in out, out
    code, out, xml = _pytest(tmp_path, "virtual", "--k210-virtual")
    assert code == 0 and "2 passed" in out, out
    assert 'name="k210_passed" value="True"' in xml and 'name="k210_count" value="40"' in xml
    code, out, xml = _pytest(tmp_path, "place", "--k210-place", "k210-b", "--k210-coordinator", farm.address)
    assert code == 0 and "2 passed" in out, out
    assert farm.holder("k210-b") is None
