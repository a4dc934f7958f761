"""A labgrid board farm on this machine, for the farm tests: virtual boards exported as places.

A labgrid coordinator, and one exporter whose RawSerialPort resources are the ptys of virtual boards
(`k210 board`); the exporter serves each acquired port through Debian's ser2net as RFC 2217. Every
server listens on 127.0.0.1 only: ser2net binds all addresses for the exporter's `tcp,PORT`
accepter, so the exporter finds (first on its PATH) a ser2net that pins that accepter to loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from k210.host.hil.handlers import RunnerProcess, virtual_board

VENV_BIN = Path(sys.executable).parent
SER2NET = "/usr/sbin/ser2net"
READY_S = 90.0  # a busy 2-core machine starts labgrid's Python processes slowly

_LOOPBACK_SER2NET = f"""#!{sys.executable}
# The exporter's ser2net, its TCP accepter bound to 127.0.0.1 (tests stay on loopback).
import os, re, sys
args = [re.sub(r"\\),tcp,(\\d+)$", r"),tcp,127.0.0.1,\\1", a) for a in sys.argv[1:]]
os.execv({SER2NET!r}, ["ser2net", *args])
"""


def require_farm_tools() -> None:
    """ser2net (Debian) and labgrid (PyPI): both installed by `make setup`; a test without them fails."""
    import pytest

    if not os.path.exists(SER2NET):
        pytest.fail("ser2net is not installed (scripts/bootstrap.sh installs it: apt-get install ser2net)")
    if not (VENV_BIN / "labgrid-coordinator").exists():
        pytest.fail("labgrid is not installed (pip install -r requirements.txt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Farm:
    """`with Farm({"k210-a": {"board": "k210"}, ...}, kmodel=...) as farm:` places up; all gone on leaving."""

    places: dict[str, dict[str, str]]  # place name -> tags
    kmodel: str | None = None  # "flashed" on every board
    baud: int = 1_500_000  # the virtual boards' line rate (they pace their bytes to it)
    power: dict[str, str] = field(default_factory=dict)  # place -> a REST relay URL (labgrid's `rest` power model)
    exporter_name: str = "lab-host-1"
    boards: dict[str, RunnerProcess] = field(default_factory=dict)
    ptys: dict[str, str] = field(default_factory=dict)
    address: str = ""
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="k210-farm-")))
    _procs: list[subprocess.Popen] = field(default_factory=list)

    def __enter__(self) -> Farm:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        for name in self.places:
            board = virtual_board(kmodel=self.kmodel, baud=self.baud)
            self.boards[name] = board
            self.ptys[name] = board.start()
        bin_dir = self.dir / "bin"
        bin_dir.mkdir()
        (bin_dir / "ser2net").write_text(_LOOPBACK_SER2NET)
        (bin_dir / "ser2net").chmod(0o755)
        lines = []
        for name, tags in self.places.items():  # what `labgrid-client create / set-tags / add-match` saves
            tag_text = ", ".join(f"{k}: {v}" for k, v in tags.items())
            lines += [f"{name}:", f"  tags: {{{tag_text}}}", "  matches:",
                      f"  - {{exporter: {self.exporter_name}, group: {name}, cls: NetworkSerialPort}}"]
            if name in self.power:
                lines.append(f"  - {{exporter: {self.exporter_name}, group: {name}, cls: NetworkPowerPort}}")
        (self.dir / "places.yaml").write_text("\n".join(lines) + "\n")
        resources = []
        for name, pty in self.ptys.items():
            resources += [f"{name}:", "  RawSerialPort:", f"    port: {pty}", f"    speed: {self.baud}"]
            if name in self.power:
                resources += ["  NetworkPowerPort:", "    model: rest", f"    host: '{self.power[name]}'",
                              "    index: 0"]
        (self.dir / "exporter.yaml").write_text("\n".join(resources) + "\n")
        self.address = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "PATH": f"{bin_dir}:{VENV_BIN}:{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
        self._spawn("coordinator", [str(VENV_BIN / "labgrid-coordinator"), "--listen", self.address], env)
        self._wait_listening()
        self._spawn("exporter", [str(VENV_BIN / "labgrid-exporter"), "--coordinator", self.address,
                                 "--name", self.exporter_name, "--hostname", "127.0.0.1",
                                 str(self.dir / "exporter.yaml")], env)
        self._wait_resources()

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self._procs.append(subprocess.Popen(command, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def _wait_listening(self) -> None:
        host, port = self.address.rsplit(":", 1)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the labgrid coordinator did not listen in {READY_S:g} s: {self.log('coordinator')}")

    def _wait_resources(self) -> None:
        """Until the coordinator lists every exported port (what an admin checks with labgrid-client resources)."""
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            self._check_alive()
            out = self.client("resources").stdout
            if all(f"{self.exporter_name}/{name}/NetworkSerialPort" in out for name in self.places):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the exporter's resources did not appear in {READY_S:g} s: {self.log('exporter')}")

    def client(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, **({"LG_USERNAME": user} if user else {})}
        return subprocess.run([str(VENV_BIN / "labgrid-client"), "--coordinator", self.address, *args], env=env,
                              capture_output=True, text=True, timeout=60)

    def holder(self, place: str) -> str | None:
        """Who holds the place now, as `labgrid-client who` shows it (None: free)."""
        out = self.client("-p", place, "show").stdout
        for line in out.splitlines():
            if line.strip().startswith("acquired:"):
                value = line.split(":", 1)[1].strip()
                return None if value in ("", "None") else value
        raise AssertionError(f"no 'acquired:' in labgrid-client show: {out}")

    def _check_alive(self) -> None:
        for proc, name in zip(self._procs, ("coordinator", "exporter")):
            if proc.poll() is not None:
                raise RuntimeError(f"labgrid {name} exited with {proc.returncode}: {self.log(name)}")

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-5:]) if path.exists() else ""

    def close(self) -> None:
        for proc in reversed(self._procs):  # each in a process group of its own: the exporter's ser2nets too
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()
        for board in self.boards.values():
            board.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
