"""A hardware map of the boards on one host, and the K210_* environment defaults (no labgrid needed).

boards.yaml (the list alone, or under `boards:`), as twister's hardware map:

    boards:
      - name: desk-a
        port: /dev/ttyUSB0          # anything pyserial opens
        baud: 1500000               # optional (--baud, K210_BAUD, 1500000)
        firmware: canmv             # optional: what the board runs; a run takes the boards its kmodel needs
        reset: "usbreset 1a86:7523" # optional: a command that resets the board, run before the job

K210_PORT (one URL, or several separated by commas), K210_BAUD and K210_FIRMWARE stand in for
--port, --baud and --firmware when they are not given, as ESPTOOL_PORT does for esptool.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k210.core.errors import BadInputError, ToolFailure
from k210.core.firmwares import KEYS as FIRMWARE_KEYS

KEYS = ("name", "port", "baud", "firmware", "reset")
RESET_TIMEOUT_S = 60.0
MIN_BAUD, MAX_BAUD = 300, 0x500000


@dataclass(frozen=True)
class Board:
    name: str
    port: str
    baud: int | None = None
    firmware: str | None = None
    reset: str | None = None


def _baud(value: Any, where: str) -> int:
    try:
        baud = int(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: baud {value!r} is not a number") from None
    if isinstance(value, bool) or not MIN_BAUD <= baud <= MAX_BAUD or str(baud) != str(value).strip():
        raise BadInputError(f"{where}: baud {value!r} must be a whole number from {MIN_BAUD} to {MAX_BAUD}")
    return baud


def load_boards(path: str | os.PathLike[str], firmwares: Sequence[str] = FIRMWARE_KEYS) -> list[Board]:
    """Every board of a boards.yaml, checked; one-line errors (exit 2) naming the file and the board."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"--boards {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"--boards {path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInputError(f"--boards {path}: not YAML{where}") from None
    if isinstance(data, Mapping) and set(data) == {"boards"}:
        data = data["boards"]
    if not isinstance(data, list) or not data:
        raise BadInputError(f"--boards {path}: expected a list of boards (each with a port), under 'boards:'")
    boards: list[Board] = []
    for i, entry in enumerate(data, 1):
        where = f"--boards {path}: board {i}"
        if not isinstance(entry, Mapping):
            raise BadInputError(f"{where} is not a mapping of {', '.join(KEYS)}")
        unknown = sorted(set(map(str, entry)) - set(KEYS))
        if unknown:
            raise BadInputError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(KEYS)})")
        port = entry.get("port")
        if not isinstance(port, str) or not port.strip():
            raise BadInputError(f"{where} has no port (a device path or URL)")
        firmware = entry.get("firmware")
        if firmware is not None and firmware not in firmwares:
            raise BadInputError(f"{where}: firmware {firmware!r} is not one of {', '.join(firmwares)}")
        reset = entry.get("reset")
        if reset is not None and (not isinstance(reset, str) or not shlex.split(reset)):
            raise BadInputError(f"{where}: reset must be a command line")
        name = str(entry.get("name") or port)
        boards.append(Board(name, port.strip(), None if entry.get("baud") is None else _baud(entry["baud"], where),
                            firmware, reset))
    for attribute in ("port", "name"):
        seen: set[str] = set()
        for board in boards:
            value = getattr(board, attribute)
            if value in seen:
                raise BadInputError(f"--boards {path}: two boards have the {attribute} {value!r}")
            seen.add(value)
    return boards


def boards_for(boards: list[Board], firmware: str, path: str) -> list[Board]:
    """The boards that run `firmware` (or do not say)."""
    chosen = [b for b in boards if b.firmware in (None, firmware)]
    if not chosen:
        have = ", ".join(sorted({b.firmware or "?" for b in boards}))
        raise BadInputError(f"--boards {path}: no board runs {firmware}, which the kmodel needs (they run: {have})")
    return chosen


def common_baud(boards: list[Board], default: int) -> int:
    """One run drives every line at one rate: the boards' own (all the same) or the default."""
    rates = {b.baud for b in boards if b.baud is not None}
    if len(rates) > 1:
        raise BadInputError("the boards run at different baud rates (" + ", ".join(map(str, sorted(rates)))
                            + "): one run uses one rate; list the boards of each rate in a file of their own")
    return rates.pop() if rates else default


def reset_boards(boards: list[Board], timeout: float = RESET_TIMEOUT_S) -> None:
    """Each board's reset command, in turn; one that fails stops the run (exit 3) before anything is sent."""
    for board in boards:
        if not board.reset:
            continue
        command = shlex.split(board.reset)
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=timeout, check=False)
        except OSError as exc:
            why = exc.strerror or exc
            raise ToolFailure(f"board {board.name}: cannot run its reset command {command[0]}: {why}") from None
        except subprocess.TimeoutExpired:
            raise ToolFailure(f"board {board.name}: its reset command ran past {timeout:g} s") from None
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise ToolFailure(f"board {board.name}: its reset command exited with {done.returncode}: {tail[0]}")


def env_ports() -> list[str]:
    """K210_PORT: one port, or several separated by commas."""
    return [p.strip() for p in os.environ.get("K210_PORT", "").split(",") if p.strip()]


def env_baud(default: int) -> int:
    value = os.environ.get("K210_BAUD", "").strip()
    return _baud(value, "K210_BAUD") if value else default


def env_firmware(choices: Sequence[str]) -> str | None:
    value = os.environ.get("K210_FIRMWARE", "").strip()
    if value and value not in choices:
        raise BadInputError(f"K210_FIRMWARE={value} is not one of {', '.join(choices)}")
    return value or None
