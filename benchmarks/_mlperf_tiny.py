"""The host side of an MLPerf-Tiny / EEMBC-runner-style text protocol, for comparison.

What those runners do: `db load N%`, then the input as hex text in 31-byte chunks (`db <62 hex
digits>%`), each acknowledged with `m-ready` before the next goes (stop and wait), then `infer 1 0%`
and `m-results-[...]`. The board side is host/virtualboard/mlperf_dut.py (`k210 board --firmware
mlperf-tiny`). Not a benchmark itself (the leading underscore keeps run_all from running it): hil_link.py drives it.
"""

from __future__ import annotations

import re
import time

from k210.host.hil.ports import Port

CHUNK = 31  # input bytes per `db` command
COMMAND_TIMEOUT_S = 5.0  # as the EEMBC runner
_RESULTS = re.compile(r"m-results-\[([^\]]*)\]")
_LAP = re.compile(r"m-lap-us-(\d+)")


class DutError(RuntimeError):
    pass


class MlperfTinyHost:
    def __init__(self, port: Port, chunk: int = CHUNK) -> None:
        self.port = port
        self.chunk = chunk
        self._pending = b""

    def command(self, text: str) -> list[str]:
        """Send one command; the lines the DUT printed up to its `m-ready`."""
        self.port.write(text.encode("ascii") + b"%")
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        lines: list[str] = []
        while True:
            while b"\n" in self._pending:
                raw, self._pending = self._pending.split(b"\n", 1)
                line = raw.decode("ascii", "replace").strip()
                if line == "m-ready":
                    return lines
                if line.startswith("e-"):
                    raise DutError(f"{text!r}: {line}")
                if line:
                    lines.append(line)
            left = deadline - time.monotonic()
            if left <= 0:
                raise DutError(f"no m-ready after {text!r} within {COMMAND_TIMEOUT_S} s")
            self._pending += self.port.read(min(0.05, left))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Swallow the boot banner up to its m-ready."""
        deadline = time.monotonic() + timeout
        while b"m-ready" not in self._pending:
            if time.monotonic() > deadline:
                raise DutError("the DUT printed no m-ready after boot")
            self._pending += self.port.read(0.05)
        self._pending = self._pending.split(b"m-ready", 1)[1].lstrip(b"\r\n")

    def infer(self, data: bytes) -> tuple[list[float], int]:
        """(outputs as printed, on-board microseconds between the laps)."""
        self.command(f"db load {len(data)}")
        for offset in range(0, len(data), self.chunk):
            self.command("db " + data[offset:offset + self.chunk].hex())
        lines = self.command("infer 1 0")
        text = "\n".join(lines)
        found = _RESULTS.search(text)
        laps = [int(x) for x in _LAP.findall(text)]
        if not found:
            raise DutError(f"no m-results in {text!r}")
        values = [float(v) for v in found.group(1).split(",") if v]
        return values, (laps[-1] - laps[0]) if len(laps) >= 2 else 0
