"""The labgrid side of `--place`: a child process that acquires places and holds them for its parent.

Run as `python -m k210.host.farm.broker --coordinator HOST:PORT` by lease.py, never by hand. A place
stays acquired in labgrid's coordinator until somebody releases it, and a `k210 hil` killed with
SIGKILL releases nothing itself: the broker does, when its stdin closes, however its parent ended.
It also keeps labgrid's asyncio and gRPC threads out of the process that streams the images.

Protocol, one JSON object a line. The parent writes
    {"acquire": [PATTERN, ...], "timeout": S}   a place name, a glob (k210-*) or tags (board=k210,lab=2)
    {"release": [NAME, ...]}                    let these go now (a board that died)
    {"power": NAME, "action": "cycle"}          the place's power driver (on, off, cycle)
and the broker answers each with {"ok": true, ...} or {"ok": false, "error": TEXT, "code": EXIT}. On EOF
it releases every place it holds and exits. Its own diagnostics go to stderr (the parent's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import select
import signal
import sys
import time
from typing import Any, TextIO

SERIAL_CLASSES = ("NetworkSerialPort", "RawSerialPort", "USBSerialPort")
# What labgrid-client's `power` drives, by the resource a place offers.
POWER_CLASSES = ("NetworkPowerPort", "NetworkUSBPowerPort", "NetworkSiSPMPowerPort", "PDUDaemonPort",
                 "TasmotaPowerPort", "NetworkYKUSHPowerPort", "NetworkSysfsGPIO")
PUMP_S = 0.05  # how long the asyncio loop runs between looks at stdin
RETRY_S = 0.2  # between tries for a held place
PORT_READY_S = 15.0  # the exporter starts ser2net when the place is acquired; its port is published after


def say(text: str) -> None:
    """A line for the user on stderr; a parent gone (a closed pipe) must not stop the releasing."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class Refused(Exception):
    def __init__(self, message: str, code: int = 3) -> None:
        super().__init__(message)
        self.code = code


def serial_url(cls: str, args: dict[str, Any]) -> str | None:
    """The pyserial URL of a serial resource, or None while it is not up (no TCP port published yet)."""
    if cls == "NetworkSerialPort":
        if not args.get("port"):
            return None
        if args.get("protocol", "rfc2217") == "raw":
            return f"socket://{args['host']}:{args['port']}"
        # ser2net does not acknowledge SET_CONTROL (DTR/RTS) on a pty or many USB bridges: pyserial must not wait.
        return f"rfc2217://{args['host']}:{args['port']}?ign_set_control"
    return args.get("port") or None  # RawSerialPort, USBSerialPort: a device on this host


def match_places(places: dict[str, Any], pattern: str) -> list[str]:
    """Place names for a --place: a name or alias, a glob over names, or tags (key=value[,key=value])."""
    if pattern in places:
        return [pattern]
    if "=" in pattern:
        wanted = dict(part.split("=", 1) for part in pattern.split(",") if "=" in part)
        return sorted(n for n, p in places.items() if all(p.tags.get(k) == v for k, v in wanted.items()))
    if any(c in pattern for c in "*?["):
        return sorted(n for n, p in places.items()
                      if fnmatch.fnmatchcase(n, pattern) or any(fnmatch.fnmatchcase(a, pattern) for a in p.aliases))
    return sorted(n for n, p in places.items() if pattern in p.aliases)


class LastError(logging.Handler):
    """labgrid's and gRPC's error logs, kept (the last one) for our one-line message instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage().splitlines()[0] if record.getMessage() else ""


LAST_ERROR = LastError()


class Broker:
    def __init__(self, address: str) -> None:
        from labgrid.remote.client import Error, start_session

        self.address = address
        try:
            self.session = start_session(address, extra={"args": argparse.Namespace()})
        except Error as exc:
            raise Refused(f"cannot reach the labgrid coordinator at {address}: {LAST_ERROR.text or exc}") from None
        self.loop = self.session.loop
        self.identity = f"{self.session.gethostname()}/{self.session.getuser()}"
        self.held: list[str] = []

    def pump(self, seconds: float) -> None:
        """Let the session take the coordinator's updates for a while."""
        self.loop.run_until_complete(asyncio.sleep(seconds))
        if self.session.stopping.is_set():
            raise Refused(f"lost the labgrid coordinator at {self.address}")

    def _rpc(self, call: Any) -> str | None:
        """A coordinator call and a sync after it; the coordinator's complaint, or None."""
        import grpc

        try:
            self.loop.run_until_complete(call)
            self.loop.run_until_complete(self.session.sync_with_coordinator())
        except grpc.aio.AioRpcError as exc:
            return exc.details() or str(exc.code())
        return None

    def _try_acquire(self, name: str) -> str | None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        why = self._rpc(self.session.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=name)))
        if why is None:
            self.held.append(name)
        return why

    def acquire(self, patterns: list[str], timeout: float) -> list[dict[str, Any]]:
        """Every place named, and every free place a glob or tag matches (at least one each), or Refused."""
        deadline = time.monotonic() + timeout
        told: set[str] = set()
        taken: list[str] = []
        while True:
            missing: list[str] = []
            for pattern in patterns:
                names = match_places(self.session.places, pattern)
                if not names:
                    known = ", ".join(sorted(self.session.places)) or "none"
                    raise Refused(f"--place {pattern} matches no place at the coordinator {self.address} "
                                  f"(places: {known})", 2)
                why = ""
                for name in names:
                    if name not in taken and not self.session.places[name].acquired:
                        why = self._try_acquire(name) or ""
                        if not why:
                            taken.append(name)
                if not any(n in taken for n in names):
                    holders = [f"{n} is held by {self.session.places[n].acquired or why or 'another client'}"
                               for n in names]
                    missing.append(f"place {holders[0]}" if names == [pattern] else
                                   f"no place matching {pattern} is free ({', '.join(holders)})")
            if not missing:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                hint = f" (waited {timeout:g} s)" if timeout > 0 else "; wait for it with --place-timeout SECONDS"
                raise Refused(f"{'; '.join(missing)}{hint}")
            for text in missing:
                if text not in told:
                    told.add(text)
                    say(f"k210: waiting up to {left:.0f} s: {text}")
            self.pump(min(RETRY_S, left))
        return [self._describe(name) for name in taken]

    def _describe(self, name: str) -> dict[str, Any]:
        """The acquired place's serial port URL (waiting for the exporter to publish it) and what else it has."""
        deadline = time.monotonic() + PORT_READY_S
        while True:
            place = self.session.places[name]
            try:
                resources = self.session.get_target_resources(place)
            except Exception as exc:  # labgrid's ServerError: an exporter gone away
                raise Refused(f"place {name}: {exc}") from None
            serial = [(key, r) for key, r in resources.items() if r.cls in SERIAL_CLASSES]
            if not serial:
                raise Refused(f"place {name} has no serial port: add a match for its exporter's serial port "
                              f"(labgrid-client -p {name} add-match EXPORTER/GROUP/NetworkSerialPort)", 2)
            (res_name, cls), resource = sorted(serial, key=lambda kr: kr[0][0] != "k210")[0]  # "k210" if several
            url = serial_url(cls, resource.args) if resource.avail else None
            if url:
                return {"name": name, "url": url, "speed": resource.args.get("speed"), "resource": res_name,
                        "power": any(r.cls in POWER_CLASSES for r in resources.values()),
                        "by": place.acquired}
            if time.monotonic() >= deadline:
                raise Refused(f"place {name}: its serial port is not available after {PORT_READY_S:g} s "
                              "(exporter down or the device unplugged?)")
            self.pump(RETRY_S)

    def release(self, names: list[str]) -> list[str]:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        done = []
        for name in [n for n in names if n in self.held]:
            # fromuser: if someone kicked us and took it meanwhile, theirs stays theirs.
            why = self._rpc(self.session.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=name,
                                                                                 fromuser=self.identity)))
            if why:
                say(f"k210: could not release place {name}: {why}")
            self.held.remove(name)
            done.append(name)
        return done

    def power(self, name: str, action: str) -> None:
        if name not in self.held:
            raise Refused(f"place {name} is not held by this run", 2)
        if action not in ("on", "off", "cycle"):
            raise Refused(f"power action {action!r}: on, off or cycle", 2)
        self.session.args = argparse.Namespace(place=name, action=action, delay=None, name=None, state=None,
                                               initial_state=None)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                self.session.power()  # as `labgrid-client -p NAME power cycle`, every driver labgrid has
        except Exception as exc:
            raise Refused(f"place {name}: power {action} failed: {exc}") from None

    def close(self) -> None:
        try:
            self.release(list(self.held))
        finally:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.session.stop())
                self.loop.run_until_complete(self.session.close())


def _handle(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
    if "acquire" in request:
        try:
            return {"ok": True, "places": broker.acquire(list(request["acquire"]), float(request.get("timeout", 0)))}
        except BaseException:
            broker.release(list(broker.held))  # all or nothing
            raise
    if "release" in request:
        return {"ok": True, "released": broker.release(list(request["release"]))}
    if "power" in request:
        broker.power(str(request["power"]), str(request.get("action", "cycle")))
        return {"ok": True}
    raise Refused(f"unknown request {sorted(request)}", 2)


def serve(broker: Broker, stdin: int, out: TextIO) -> None:
    """Requests from stdin until it closes (the parent ended, however): then everything held is let go."""
    buffered = b""
    try:
        while True:
            try:
                broker.pump(PUMP_S)
            except Refused as exc:  # the coordinator went away: nothing left to hold
                say(f"k210: {exc}")
                return
            ready, _, _ = select.select([stdin], [], [], 0)
            if not ready:
                continue
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                try:
                    reply = _handle(broker, json.loads(line))
                except Refused as exc:
                    reply = {"ok": False, "error": str(exc), "code": exc.code}
                out.write(json.dumps(reply) + "\n")
                out.flush()
    finally:
        broker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k210.host.farm.broker")
    parser.add_argument("--coordinator", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    # The protocol has stdout to itself: anything else printed (labgrid prints) goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and then closes our stdin
    logging.getLogger().handlers = [LAST_ERROR]  # errors reach the user in our one line, not as log lines
    logging.getLogger().setLevel(logging.ERROR)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # through serve's finally: the places are released

    signal.signal(signal.SIGTERM, on_term)
    try:
        broker = Broker(args.coordinator)
    except Refused as exc:
        out.write(json.dumps({"ok": False, "error": str(exc), "code": exc.code}) + "\n")
        out.flush()
        return exc.code
    out.write(json.dumps({"ok": True, "identity": broker.identity}) + "\n")
    out.flush()
    serve(broker, sys.stdin.fileno(), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
