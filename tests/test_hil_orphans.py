"""Nothing left running or on disk after a `kill -9` of `k210 hil` (issue 23).

Simulator workers (multiprocessing, spawn) die with their parent, and with them the resource
tracker; virtual boards leave with their stdin; a board killed with -9 leaves its work directory,
which the next board removes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hil_support import tiny_models

from k210.host.virtualboard.board import WORKDIR_PREFIX, remove_orphaned_workdirs


def _marked(token: str) -> dict[int, str]:
    """Processes whose environment holds the token: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"K210_ORPHAN_TEST={token}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _env(token: str, tmp: Path) -> dict[str, str]:
    return {**os.environ, "K210_ORPHAN_TEST": token, "TMPDIR": str(tmp)}


def _wait_for(condition, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_during_the_simulator_leaves_no_process_behind(tmp_path):
    m = tiny_models()
    token = uuid.uuid4().hex
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "k210.host.cli", "hil", str(m["kmodel_a"]), "--virtual",
                             "--boards", "2", "--dataset", "xo", "--split", "train", "--limit", "6000",
                             "--no-reference", "--workers", "2"],
                            env=_env(token, scratch), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def simulator_processes() -> list[int]:  # the resource tracker comes first: wait for the workers too
            found = [p for p, cmd in _marked(token).items() if "multiprocessing" in cmd]
            return found if len(found) >= 2 else []

        workers = _wait_for(simulator_processes, 120)
        assert len(workers) >= 2, f"no simulator workers seen: {_marked(token)}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = _wait_for(lambda: not _marked(token), 10)
        assert left, f"still running 10 s after the kill: {_marked(token)}"
    finally:
        for pid in _marked(token):  # a failed test must not leave them either
            os.kill(pid, signal.SIGKILL)
    assert not [p for p in scratch.iterdir() if p.name.startswith(WORKDIR_PREFIX)]


def test_a_board_killed_with_9_leaves_a_directory_the_next_board_removes(tmp_path):
    token = uuid.uuid4().hex
    env = _env(token, tmp_path)
    board = [sys.executable, "-m", "k210.host.cli", "board", "--exit-with-parent"]
    first = subprocess.Popen(board, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    first.stdout.readline()  # its port: it is up, its work directory made
    mine = [p for p in tmp_path.iterdir() if p.name.startswith(f"{WORKDIR_PREFIX}{first.pid}-")]
    assert len(mine) == 1
    first.kill()
    first.wait()
    first.stdin.close()
    first.stdout.close()
    assert mine[0].is_dir()  # no chance to clean up
    alive = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-x"  # a live owner's directory stays
    alive.mkdir()
    second = subprocess.Popen(board, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    try:
        second.stdout.readline()
        assert not mine[0].exists() and alive.is_dir()
    finally:
        second.stdin.close()
        second.wait(timeout=10)
        second.stdout.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f"{WORKDIR_PREFIX}{second.pid}-")]
    assert remove_orphaned_workdirs(str(tmp_path)) == []
