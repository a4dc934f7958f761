"""Every numeric option of every command checked at parse time: a number, finite, within its range.

argparse's `type=int`/`type=float` take "nan", "inf", "-5" or 10**30 happily, and the command then
fails deep inside (a negative --limit slicing from the end, --baud 10**9 reaching pyserial, a NaN
threshold that every comparison fails). `bound_numeric_flags(parser)` wraps the type of each such
option with its range from RANGES (by option name; anything not listed must be finite and >= 0), so
a bad number is one line, exit 2, before any work starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

MAX_BAUD = 0x500000  # MaixPy's UART limit; the K210's ISP and USB-serial adapters stay below it too


@dataclass(frozen=True)
class Range:
    low: float = 0.0
    high: float | None = None
    low_open: bool = False  # low itself is not allowed (a timeout of 0 s)

    def describe(self) -> str:
        low, high = _text(self.low), _text(self.high)
        if self.high is None:
            return f"above {low}" if self.low_open else f"at least {low}"
        if self.low_open:
            return f"above {low} and at most {high}"
        return f"between {low} and {high}"

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value <= self.high)


def _text(value: float | None) -> str:
    return str(int(value)) if value is not None and value == int(value) else f"{value:g}"


SEED = Range(0, 2**32 - 1)
COUNT = Range(1)
SECONDS = Range(0, 86_400, low_open=True)
FRACTION = Range(0, 1)

RANGES: dict[str, Range] = {
    "--seed": SEED,
    "--fault-seed": SEED,
    "--epochs": Range(1, 100_000),
    "--limit": COUNT,
    "--calib": COUNT,
    "--more-calib": COUNT,
    "--probes": COUNT,
    "--probe-images": COUNT,
    "--workers": Range(1, 1024),
    "--boards": Range(1, 64),
    "--baud": Range(300, MAX_BAUD),
    "--min-agreement": FRACTION,
    "--min-cosine": Range(-1, 1),
    "--connect-timeout": SECONDS,
    "--reply-timeout": SECONDS,
    "--stall-timeout": SECONDS,
    "--silence-timeout": Range(0, 86_400),
    "--place-timeout": Range(0, 86_400),
    "--boot-ms": Range(0, 600_000),
    "--write-pause": Range(0, 60_000),
    "--read-buf-len": Range(16, 1 << 24),
    "--max-frame": Range(128, 65_536),
}
DEFAULT = Range(0)


def range_of(action: argparse.Action) -> Range:
    target = getattr(action, "target", None)  # a deprecated alias has its new option's range
    for option in [*action.option_strings, *(target.option_strings if target is not None else [])]:
        if option in RANGES:
            return RANGES[option]
    return DEFAULT


def bounded(kind: type, limits: Range) -> Callable[[str], int | float]:
    """An argparse type: `kind` parsed from the text, then held to `limits`."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got '{text}'") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
        if not limits.holds(value):
            raise argparse.ArgumentTypeError(f"must be {limits.describe()} (got {text})")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in some messages
    convert.kind = kind  # type: ignore[attr-defined]
    convert.limits = limits  # type: ignore[attr-defined]
    return convert


def numeric_actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    """(command, action) for every int/float option of every subcommand."""
    found = []
    for sub in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        for command, subparser in sub.choices.items():
            for action in subparser._actions:
                kind = getattr(action.type, "kind", action.type)
                if kind in (int, float) and action.option_strings:
                    found.append((command, action))
    return found


def bound_numeric_flags(parser: argparse.ArgumentParser) -> None:
    for _, action in numeric_actions(parser):
        if not hasattr(action.type, "limits"):
            action.type = bounded(action.type, range_of(action))  # type: ignore[arg-type]
