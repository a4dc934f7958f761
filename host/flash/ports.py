"""Find the serial port of a K210 board by the USB id of its USB-serial bridge."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from k210.core.errors import BadInputError

# USB-serial bridges on K210 boards. Sipeed's CH552 firmware enumerates as an FT2232 (0403:6010).
K210_BRIDGES: dict[tuple[int, int], str] = {
    (0x1A86, 0x7523): "CH340",
    (0x0403, 0x6010): "FT2232/CH552",
}
# kflash takes the second FT2232 interface for these boards (the first one is JTAG).
SECOND_INTERFACE_BOARDS = ("goE", "maixduino")


@dataclass(frozen=True)
class PortCandidate:
    device: str
    vid: int
    pid: int
    bridge: str
    serial_number: str | None
    location: str | None
    description: str = ""

    @property
    def usb_device_key(self) -> tuple:
        """The physical adapter: all interfaces of one FT2232 share it."""
        base = (self.location or "").split(":")[0] or None
        return (self.vid, self.pid, self.serial_number or base or self.device)

    @property
    def interface(self) -> int | None:
        """USB interface number from a Linux-style location '1-1.4:1.0' -> 0."""
        match = re.search(r":\d+\.(\d+)$", self.location or "")
        return int(match.group(1)) if match else None

    def describe(self) -> str:
        return f"{self.device} ({self.bridge} {self.vid:04x}:{self.pid:04x})"


def k210_candidates(ports: Iterable[Any] | None = None) -> list[PortCandidate]:
    """Serial ports whose USB id is a known K210 bridge; `ports` defaults to pyserial's comports()."""
    if ports is None:
        from serial.tools import list_ports

        ports = list_ports.comports()
    found = []
    for info in ports:
        key = (getattr(info, "vid", None), getattr(info, "pid", None))
        if key in K210_BRIDGES:
            found.append(
                PortCandidate(
                    device=info.device,
                    vid=key[0],
                    pid=key[1],
                    bridge=K210_BRIDGES[key],
                    serial_number=getattr(info, "serial_number", None),
                    location=getattr(info, "location", None),
                    description=getattr(info, "description", "") or "",
                )
            )
    return found


def choose_port(board: str | None = None, ports: Iterable[Any] | None = None) -> str:
    """The one K210 port on this machine, or a one-line error saying why there is not exactly one."""
    candidates = k210_candidates(ports)
    if not candidates:
        known = ", ".join(f"{vid:04x}:{pid:04x} ({name})" for (vid, pid), name in K210_BRIDGES.items())
        raise BadInputError(
            f"no K210 board found: no USB serial port with id {known}; connect the board or pass --port"
        )
    adapters: dict[tuple, list[PortCandidate]] = {}
    for candidate in candidates:
        adapters.setdefault(candidate.usb_device_key, []).append(candidate)
    if len(adapters) > 1:
        listed = ", ".join(candidate.describe() for candidate in candidates)
        raise BadInputError(f"several K210-like boards found: {listed}; pick one with --port")
    (interfaces,) = adapters.values()
    interfaces.sort(key=lambda c: (c.interface if c.interface is not None else 99, c.device))
    if board in SECOND_INTERFACE_BOARDS and len(interfaces) > 1:
        return interfaces[1].device
    return interfaces[0].device
