"""One deploy: open the port without resetting the board, enter the raw REPL, write and verify, reset."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from k210.core.errors import BadInputError

from .board_files import BoardFiles, VerifiedFile
from .errors import DeployFailed
from .plan import DeployFile, DeployPlan
from .rawrepl import RawRepl

DEFAULT_BAUD = 115_200  # MaixPy's and CanMV's REPL rate

ProgressFactory = Callable[[DeployFile], Callable[[int], None]]


@dataclass
class DeployResult:
    files: list[VerifiedFile]
    listing: dict[str, int]
    free_before: int | None
    reset: bool
    seconds: float
    skipped: list[str] = field(default_factory=list)


def open_port(url: str, baud: int = DEFAULT_BAUD):
    """Open a port or pyserial URL (socket://, loop://, rfc2217://) with DTR and RTS released.

    On boards with kflash's auto-reset wiring an asserted DTR or RTS holds the K210 in reset or
    pulls IO16 low, so both lines are set before the port opens.
    """
    import serial

    try:
        port = serial.serial_for_url(url, baudrate=baud, timeout=0.05, do_not_open=True)
        port.dtr = False
        port.rts = False
        port.open()
    except (serial.SerialException, ValueError) as exc:
        raise BadInputError(f"cannot open serial port {url}: {exc}") from None
    return port


def deploy(
    plan: DeployPlan,
    port,
    *,
    name: str = "the board",
    reset: bool = False,
    timeout: float = 10.0,
    connect_timeout: float = 10.0,
    write_pause: float = 0.01,
    progress: ProgressFactory | None = None,
) -> DeployResult:
    started = time.monotonic()
    repl = RawRepl(port, name=name, timeout=timeout, write_pause=write_pause)
    repl.enter(connect_timeout)
    board = BoardFiles(repl)
    free = board.free_bytes(plan.directory)
    boots_runner = any(item.remote == f"{plan.directory}/main.py" for item in plan.files)
    if plan.directory == "/flash" and boots_runner and board.has_directory("/sd"):
        raise DeployFailed("an SD card is in this board: MaixPy and CanMV then boot /sd/main.py, not /flash/main.py; "
                           "deploy with --target sd (or take the card out)")
    before = board.listing(plan.directory)
    _check_space(plan, before, free)

    verified = []
    for item in plan.files:
        verified.append(board.put(item.content, item.remote, progress(item) if progress else None))
    listing = board.listing(plan.directory)
    for item in verified:
        name_on_board = item.remote.rsplit("/", 1)[1]
        if listing.get(name_on_board) != item.size:
            raise DeployFailed(f"{item.remote} is missing from the board's listing after the write")
    if reset:
        board.reset()
    else:
        repl.exit()
    return DeployResult(verified, listing, free, reset, time.monotonic() - started)


def _check_space(plan: DeployPlan, existing: dict[str, int], free: int | None) -> None:
    """Each file is written next to the one it replaces, then swapped in: find the peak need."""
    if free is None:
        return
    used = peak = 0
    for item in plan.files:
        peak = max(peak, used + item.size)
        used += item.size - existing.get(item.remote.rsplit("/", 1)[1], 0)
    if peak > free:
        raise DeployFailed(
            f"not enough space in {plan.directory}: the deploy needs up to {peak:,} bytes, {free:,} are free"
        )
