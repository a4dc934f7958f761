"""Boards of a labgrid environment file on this host (`--lg-env FILE --place TARGET`): no coordinator.

A labgrid environment (the YAML labgrid's own pytest plugin takes as --lg-env) names targets and
their resources. A target whose serial port is local (RawSerialPort, or USBSerialPort found by udev)
or a NetworkSerialPort is a board here; nothing is acquired, as labgrid does not lock local targets.
Places shared through a coordinator are `--place` without `--lg-env`.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from k210.core.errors import BadInputError, ToolFailure

from .broker import serial_url
from .lease import Place

SERIAL_CLASSES = ("RawSerialPort", "USBSerialPort", "NetworkSerialPort")
UDEV_WAIT_S = 10.0  # a USBSerialPort is found by udev: how long to wait for the device


def local_places(path: str, patterns: list[str]) -> list[Place]:
    """The serial port of every target a pattern names (a name or a glob), in the environment file."""
    if not Path(path).is_file():
        raise BadInputError(f"--lg-env {path}: no such file")
    try:
        from labgrid import Environment
        from labgrid.exceptions import NoResourceFoundError
    except ImportError:
        raise ToolFailure("--lg-env needs labgrid: pip install 'k210-deploy[farm]' (or labgrid) first") from None
    try:
        env = Environment(config_file=str(path))
        names = list(env.config.get_targets() or {})
    except Exception as exc:  # labgrid's own InvalidConfigError, a YAML error
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"--lg-env {path}: {why}") from None
    chosen: list[str] = []
    for pattern in patterns:
        matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise BadInputError(f"--place {pattern} names no target of {path} (targets: {', '.join(names) or 'none'})")
        chosen += [n for n in matched if n not in chosen]
    places = []
    for name in chosen:
        try:
            target = env.get_target(name)
        except Exception as exc:
            raise BadInputError(f"--lg-env {path}: target {name}: {exc}") from None
        resources = [r for r in target.resources if type(r).__name__ in SERIAL_CLASSES]
        if not resources:
            raise BadInputError(f"--lg-env {path}: target {name} has no serial port ({', '.join(SERIAL_CLASSES)})")
        resource = resources[0]
        try:
            target.await_resources([resource], timeout=UDEV_WAIT_S)
        except NoResourceFoundError:
            raise ToolFailure(f"target {name}: its {type(resource).__name__} is not there (unplugged?)") from None
        args = {"port": resource.port, "host": getattr(resource, "host", None),
                "protocol": getattr(resource, "protocol", "rfc2217")}
        url = serial_url(type(resource).__name__, args)
        if not url:
            raise ToolFailure(f"target {name}: its {type(resource).__name__} has no port")
        places.append(Place(name, url, getattr(resource, "speed", None), power=False, by="local"))
    return places
