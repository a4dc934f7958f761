"""A board lost mid-run is not hidden (issue 23): two boards, one silent for good or killed at ~image 100.

The other board runs its images, every output is right, and the report (text and JSON) says which
board failed after how many images, with its last error and its tries to reopen the port; the run
exits 3 with one line on stderr, unless --allow-lost-boards.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hil_support import tiny_models

IMAGES = 240


def _silent_board(kmodel: Path) -> str:
    """A board whose line goes dead for good after its 60th frame (some 50 images in)."""
    return (f"{sys.executable} -m k210.host.cli board --exit-with-parent {kmodel} "
            "--faults silence_at=60,silence_s=100000")


@pytest.mark.slow
def test_a_board_silent_for_good_fails_the_run_and_the_report_says_so(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("K210_PROGRESS_EVERY", "3600")  # stderr: the failure's one line, no progress lines
    m = tiny_models()
    args = ["hil", m["kmodel_a"], "--virtual", "--board-cmd", _silent_board(m["kmodel_a"]), "--dataset", "xo",
            "--limit", IMAGES, "--no-reference", "--workers", "1", "--silence-timeout", "2"]
    r = cli(*args, "--json-out", tmp_path / "h.json")
    assert r.code == 3, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "1 of 2 boards lost:" in lines[0] and "failed after" in lines[0], r.err
    assert "stopped answering" in lines[0] and "--allow-lost-boards" in lines[0]
    envelope = json.loads((tmp_path / "h.json").read_text())
    report = envelope["result"]
    assert envelope["exit_code"] == 3 and envelope["passed"] is False and report["boards_lost"] == 1
    fates = {b["port"]: b for b in report["boards"]}
    lost = [b for b in fates.values() if b["fate"] == "failed"]
    assert len(lost) == 1 and 10 <= lost[0]["failed_after_images"] <= 100 and "stopped answering" in lost[0]["error"]
    assert lost[0]["images"] == lost[0]["failed_after_images"]
    assert sum(b["images"] for b in fates.values()) >= IMAGES  # the other one ran the rest
    assert report["count"] == IMAGES and report["board_vs_simulator"]["bit_identical"] == 1.0
    verdict = " ".join(r.out.splitlines()[:2])  # the verdict first (wrapped at 100 columns)
    assert verdict.startswith("FAIL") and "1 of 2 boards lost" in verdict and "the run fails" in verdict
    assert f"FAILED after {lost[0]['failed_after_images']} images: " in " ".join(r.out.split())  # its own line

    r = cli(*args, "--allow-lost-boards", "--json-out", tmp_path / "allowed.json")
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "allowed.json").read_text())["result"]
    assert report["boards_lost"] == 1 and report["passed"] is True
    assert r.out.splitlines()[0].startswith("PASS") and "allowed by --allow-lost-boards" in r.out


# A socket board: once it is killed nobody listens there (a pty's name could go to another process's pty).
_KILLABLE = textwrap.dedent("""\
    import subprocess, sys
    board = subprocess.Popen([sys.executable, "-m", "k210.host.cli", "board", "--exit-with-parent",
                              sys.argv[1], "--port", "socket://127.0.0.1:0"], stdout=subprocess.PIPE)
    open(sys.argv[2], "w").write(str(board.pid))
    sys.stdout.write(board.stdout.readline().decode())
    sys.stdout.flush()
    sys.stdin.read()  # until the harness lets go
    board.kill()
""")


@pytest.mark.slow
def test_a_board_killed_mid_run_is_reported_with_its_reopen_tries(tmp_path):
    from k210.host.hil.report import render
    from k210.host.hil.run import HilConfig, exit_code, run_hil

    m = tiny_models()
    script, pid_file, journal = tmp_path / "killable.py", tmp_path / "board.pid", tmp_path / "j.jsonl"
    script.write_text(_KILLABLE)

    def kill_at_image_100() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_bytes().count(b'"i":') >= 100 and pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_at_image_100, daemon=True)
    killer.start()
    report = run_hil(HilConfig(kmodel=str(m["kmodel_a"]), virtual=True,
                               board_cmds=[f"{sys.executable} {script} {m['kmodel_a']} {pid_file}"],
                               dataset="xo", limit=IMAGES * 2, no_reference=True, workers=1, patience=2,
                               baud=460_800, journal=str(journal)))
    killer.join()
    lost = [b for b in report["boards"] if b["fate"] == "failed"]
    assert len(lost) == 1 and lost[0]["reopen_tries"] >= lost[0]["reopens"] + 2, report["boards"]
    assert "lost the board on" in lost[0]["error"] and lost[0]["failed_after_images"] >= 1
    assert exit_code(report) == 3 and report["count"] == IMAGES * 2
    assert report["board_vs_simulator"]["bit_identical"] == 1.0
    text = render(report)
    assert "failed tries to reopen its port" in text and "FAILED after" in text


@pytest.mark.slow
def test_a_single_board_that_dies_is_one_line_on_stderr(cli, monkeypatch):
    monkeypatch.setenv("K210_PROGRESS_EVERY", "3600")
    m = tiny_models()
    r = cli("hil", m["kmodel_a"], "--virtual", "--faults", "silence_at=60,silence_s=100000", "--dataset", "xo",
            "--limit", IMAGES, "--no-reference", "--workers", "1", "--silence-timeout", "2")
    assert r.code == 3 and len(r.err.strip().splitlines()) == 1, r.err
    assert "no reply to HELLO_REQ" in r.err and "the board stopped answering" in r.err


def test_a_progress_line_that_fell_short_does_not_end_in_done():
    import io

    from k210.core.progress import PlainProgress

    def last_line(n: int, total: int, fail: bool = False) -> str:
        out = io.StringIO()
        try:
            with PlainProgress(total, "board", "img", every=0, stream=out) as bar:
                bar.update(n)
                if fail:
                    raise RuntimeError("a board failed")
        except RuntimeError:
            pass
        return out.getvalue().strip().splitlines()[-1]

    assert last_line(10, 10).endswith(" done")
    assert last_line(7, 10).endswith(" stopped")
    assert last_line(10, 10, fail=True).endswith(" stopped")
