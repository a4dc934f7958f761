"""labgrid places held for a run, as the run sees them: names, serial port URLs, power, release.

The labgrid client lives in a child process (broker.py) that releases the places when this process
ends, even by SIGKILL; this module only speaks JSON lines to it, so `k210 hil` without --place
never imports labgrid.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from k210.core.errors import BadInputError, K210Error, ToolFailure

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default
START_S = 60.0  # the broker importing labgrid and reaching the coordinator
CLOSE_S = 15.0  # releasing every place at the end

log = logging.getLogger("k210.hil")


def coordinator_address(given: str | None) -> str:
    """--coordinator, else LG_COORDINATOR (as labgrid-client), else labgrid's default."""
    return given or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


def _forward(stream: Any) -> None:
    """The broker's lines (waiting for a place, labgrid's warnings) through this process's sys.stderr."""
    for line in iter(stream.readline, b""):
        sys.stderr.write(line.decode("utf-8", "replace"))
        sys.stderr.flush()
    stream.close()


@dataclass(frozen=True)
class Place:
    name: str
    url: str  # what pyserial opens: rfc2217://HOST:PORT?ign_set_control from an exporter's ser2net
    speed: int | None  # the exporter's configured line rate
    power: bool  # the place has a power driver labgrid can drive
    by: str  # who holds it, as the coordinator says: HOST/USER


class PlaceLease:
    """`with PlaceLease(["k210-*"], timeout=30) as lease:` the places are held; they are let go on leaving."""

    def __init__(self, patterns: list[str], *, coordinator: str | None = None, timeout: float = 0.0) -> None:
        if not patterns:
            raise BadInputError("no --place given")
        if not timeout >= 0 or timeout == float("inf"):
            raise BadInputError("--place-timeout must be a number of seconds, 0 or more")
        self.patterns = patterns
        self.address = coordinator_address(coordinator)
        self.timeout = timeout
        self.places: list[Place] = []
        self.identity = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # board threads may release while the main thread powers
        self._buffer = b""
        self._stderr: threading.Thread | None = None

    # -- the broker --------------------------------------------------------------------------------

    def __enter__(self) -> PlaceLease:
        if importlib.util.find_spec("labgrid") is None:
            raise ToolFailure("--place needs labgrid: pip install 'k210-deploy[farm]' (or labgrid) first")
        command = [sys.executable, "-m", "k210.host.farm.broker", "--coordinator", self.address]
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      start_new_session=True)  # Ctrl-C reaches us; we tell the broker
        self._stderr = threading.Thread(target=_forward, args=(self._proc.stderr,), daemon=True)
        self._stderr.start()
        try:
            hello = self._reply(START_S)
            self.identity = hello.get("identity", "")
            reply = self.request({"acquire": self.patterns, "timeout": self.timeout}, self.timeout + START_S)
            self.places = [Place(p["name"], p["url"], p.get("speed"), bool(p.get("power")), p.get("by") or "")
                           for p in reply["places"]]
        except BaseException:
            self.close()
            raise
        for place in self.places:
            log.info("place %s (held by %s): %s", place.name, place.by, place.url)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(self, message: dict[str, Any], wait: float = 30.0) -> dict[str, Any]:
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise ToolFailure("the labgrid places were already released")
            try:
                proc.stdin.write((json.dumps(message) + "\n").encode())
                proc.stdin.flush()
            except OSError:
                raise ToolFailure("the labgrid broker has gone (its places are released)") from None
            return self._reply(wait)

    def _reply(self, wait: float) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + wait
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise ToolFailure(f"the labgrid coordinator at {self.address} did not answer in {wait:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ToolFailure(f"the labgrid broker exited ({proc.wait()}): see the lines above")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply = json.loads(line)
        if not reply.get("ok"):
            error = reply.get("error", "labgrid refused")
            raise BadInputError(error) if reply.get("code") == 2 else ToolFailure(error)
        return reply

    def close(self) -> None:
        """Release every place (the broker does, as its stdin closes) and wait for it to say so."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=CLOSE_S)
        except subprocess.TimeoutExpired:
            log.warning("the labgrid broker did not finish releasing in %g s; stopping it", CLOSE_S)
            proc.terminate()  # its SIGTERM handler still releases
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.join(timeout=5)

    # -- what a run does with them -----------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.places]

    def place_of(self, url: str) -> Place | None:
        return next((p for p in self.places if p.url == url), None)

    def board_lost(self, url: str) -> None:
        """A board stopped answering for good: let its place go now, for whoever can mend it."""
        place = self.place_of(url)
        if place is None:
            return
        try:
            self.request({"release": [place.name]})
            log.warning("released place %s: its board stopped answering", place.name)
        except K210Error as exc:
            log.warning("could not release place %s now: %s", place.name, exc)

    def power_cycle(self, name: str) -> None:
        self.request({"power": name, "action": "cycle"}, wait=120.0)

    def power_cycle_all(self) -> None:
        """Every place with a power driver, power-cycled; the others said (a reset needs a driver)."""
        for place in self.places:
            if place.power:
                log.info("place %s: power cycle", place.name)
                self.power_cycle(place.name)
            else:
                log.warning("place %s has no power driver: not power-cycled", place.name)
