"""Run kflash 1.1.6 on a .kfpkg with progress events, a stall watchdog and one-line errors.

kflash is used as a library (`KFlash().process(terminal=False, ...)`). Three of its habits shape
this module:
- `KFlash.log` reads the *class* attribute `print_callback`; the constructor argument is ignored.
  We set the class attribute for the duration of a run and restore it.
- After a failed or unanswered 64 KiB write it retries for ever (the retry limit sits after a
  `continue`), each try waiting up to 90 s. kflash therefore runs in a worker thread; when no
  progress or log line arrives for `stall_timeout` seconds the watchdog swaps kflash's serial port
  for one that raises on any use, which unwinds the worker, and reports the stall.
- When the stub answers a write with "bad data checksum" kflash logs a warning and moves on to the
  next chunk without resending, leaving 64 KiB of stale flash. We count those warnings and fail
  the run, since the flash no longer holds the file.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from k210.core.errors import BadInputError, K210Error

from .errors import FlashFailed

KFLASH_BOARDS = ("kd233", "dan", "bit", "bit_mic", "goE", "goD", "maixduino", "trainer")
DEFAULT_BAUD = 1_500_000
SLOW_BAUD = 115_200
DEFAULT_STALL_TIMEOUT = 30.0

ProgressCallback = Callable[[str, int, int], None]  # (what: "ISP" or a file name, done bytes, total bytes)
LogCallback = Callable[[str], None]

_CHECKSUM_SKIP = "Data checksum error"


@dataclass
class FlashResult:
    port: str
    seconds: float
    log: list[str] = field(default_factory=list)


class _Aborted(Exception):
    """Raised inside kflash's worker thread by the poisoned port."""


class _AbortedPort:
    """Stands in for kflash's serial port after an abort: any use raises, unwinding kflash."""

    def __getattr__(self, name: str):
        raise _Aborted(f"flash aborted (kflash touched port.{name})")


@dataclass
class _Phase:
    text: str = "opening the serial port"
    stub_loaded: bool = False  # the stub has answered once

    @property
    def waiting_for_stub(self) -> bool:
        return self.text in ("starting the flash stub", "switching the flash stub to the write baud rate")

    def update_from_log(self, line: str) -> None:
        if "Trying to Enter the ISP Mode" in line:
            self.text = "entering ISP mode (resetting the board)"
        elif "Greeting Message Detected" in line:
            self.text = "loading the flash stub into SRAM"
        elif "Booting From" in line:
            self.text = "starting the flash stub"
        elif "Boot to Flashmode Successfully" in line:
            self.text, self.stub_loaded = "talking to the flash stub", True
        elif "Selected Baudrate" in line:
            self.text = "switching the flash stub to the write baud rate"
        elif "Selected Flash" in line:
            self.text = "initialising the SPI flash"
        elif match := re.search(r"Writing (\S+) into (0x[0-9a-fA-F]+)", line):
            self.text = f"writing {match.group(1)} at {match.group(2)}"
        elif "Rebooting" in line:
            self.text = "rebooting the board"

    def update_from_progress(self, what: str, done: int, total: int) -> None:
        if what == "ISP":
            self.text = f"loading the flash stub into SRAM ({done}/{total} bytes)"
        else:
            self.text = f"writing {what} ({done:,}/{total:,} bytes)"


def run_kflash(
    package: str | Path,
    *,
    port: str,
    board: str | None = None,
    baud: int = DEFAULT_BAUD,
    slow: bool = False,
    io_mode: str = "dio",
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
) -> FlashResult:
    """Flash `package` (.kfpkg or .bin) through kflash; raise FlashFailed/BadInputError with one line."""
    import kflash

    if board is not None and board not in KFLASH_BOARDS:
        raise BadInputError(f"unknown board {board!r}: choose one of {', '.join(KFLASH_BOARDS)}")
    events: queue.Queue[tuple] = queue.Queue()
    flasher = kflash.KFlash()

    def on_log(*args, **kwargs) -> None:
        if kwargs.get("end") == "\r":  # kflash's own text progress bar; we draw ours from the callback
            return
        text = " ".join(str(arg) for arg in args).strip()
        if text:
            events.put(("log", text))

    def on_progress(what: str, done: int, total: int, _speed: str) -> None:
        events.put(("progress", what, done, total))

    def work() -> None:
        try:
            flasher.process(
                terminal=False,
                dev=port,
                baudrate=baud,
                board=board,
                file=str(package),
                callback=on_progress,
                noansi=True,
                slow_mode=slow,
                io_mode=io_mode,
            )
            events.put(("done",))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which explains it
            events.put(("error", exc))

    saved_callback = kflash.KFlash.print_callback
    kflash.KFlash.print_callback = on_log
    worker = threading.Thread(target=work, name="kflash", daemon=True)
    phase = _Phase()
    lines: list[str] = []
    skipped_chunks = 0
    started = last_event = time.monotonic()
    try:
        worker.start()
        while True:
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() - last_event > stall_timeout:
                    _abort(flasher, worker)
                    raise FlashFailed(
                        f"no progress for {stall_timeout:g} s while {phase.text} on {port}: the board stopped "
                        f"answering; check the cable and power, then retry (try --slow)"
                    ) from None
                continue
            except KeyboardInterrupt:
                _abort(flasher, worker)
                raise
            last_event = time.monotonic()
            kind = event[0]
            if kind == "log":
                lines.append(event[1])
                phase.update_from_log(event[1])
                if _CHECKSUM_SKIP in event[1]:
                    skipped_chunks += 1
                if log is not None:
                    log(event[1])
            elif kind == "progress":
                phase.update_from_progress(*event[1:])
                if progress is not None:
                    progress(*event[1:])
            elif kind == "error":
                raise _explain(event[1], port=port, board=board, baud=baud, phase=phase) from None
            else:
                break
    finally:
        kflash.KFlash.print_callback = saved_callback
    if skipped_chunks:
        raise FlashFailed(
            f"the board reported {skipped_chunks} corrupted write frame(s) and kflash 1.1.6 does not resend "
            f"them, so the flash does not hold your files; flash again (try --slow or a lower --baud)"
        )
    return FlashResult(port=port, seconds=time.monotonic() - started, log=lines)


def _abort(flasher, worker: threading.Thread) -> None:
    """Make kflash's worker thread give up: flag it and poison its serial port."""
    flasher.kill()
    loader = getattr(flasher, "loader", None)
    if loader is not None:
        real_port, loader._port = loader._port, _AbortedPort()
        try:
            real_port.close()
        except Exception:  # noqa: BLE001 - closing a port that is already failing
            pass
    worker.join(timeout=5)


def _explain(exc: BaseException, *, port: str, board: str | None, baud: int, phase: _Phase) -> K210Error:
    """kflash raises bare Exception('[ERROR] ...'); turn it into what the user should do next."""
    import serial

    text = " ".join(str(exc).replace("[ERROR]", "").split())
    if isinstance(exc, K210Error):
        return exc
    if isinstance(exc, serial.SerialException) and "could not open port" in text:
        return BadInputError(f"cannot open serial port {port}: {text}")
    if "No valid Kendryte K210 found" in text:
        tried = f"--board {board}" if board else "every kflash reset sequence"
        return FlashFailed(
            f"the board on {port} did not enter ISP mode (no answer from the K210 boot ROM after 15 tries with "
            f"{tried}); check the port, try another --board, or hold BOOT while pressing RESET"
        )
    if "Greeting fail" in text:
        return FlashFailed(f"lost the serial port {port} while entering ISP mode: {text}")
    if "Fast mode failed" in text:
        return FlashFailed(f"the boot ROM stopped answering after the baud-rate switch on {port}; use --slow")
    # After a receive timeout kflash closes its own port and, outside the ISP greeting and the write
    # loop, does not reopen it: the next write fails with one of these two messages.
    if "serial port has been disconnected" in text or "port that is not open" in text:
        if phase.waiting_for_stub:
            return FlashFailed(
                f"the flash stub did not answer while {phase.text} (baud {baud}); retry with --slow or a lower --baud"
            )
        return FlashFailed(
            f"the board stopped answering while {phase.text} on {port}; check the cable and retry (try --slow)"
        )
    if "Failed to Connect to K210's Stub" in text:
        return FlashFailed(
            f"the flash stub did not answer after loading (baud {baud}); retry with --slow or a lower --baud"
        )
    if "Failed to initialize flash" in text:
        return FlashFailed("the flash stub could not initialise the SPI flash chip")
    if "Failed to write to K210's flash" in text or "Error Count Exceeded" in text:
        return FlashFailed(f"the board refused a flash write while {phase.text}; the flash is incomplete: {text}")
    if "reboot" in text.lower():
        return FlashFailed(f"everything was written but the board did not confirm the reboot; press RESET ({text})")
    if isinstance(exc, _Aborted):
        return FlashFailed(f"flash aborted while {phase.text}")
    if isinstance(exc, serial.SerialException | OSError):
        return FlashFailed(f"serial port {port} failed while {phase.text}: {text}")
    return FlashFailed(f"kflash failed while {phase.text}: {text or type(exc).__name__}")
