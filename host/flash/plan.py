"""What goes where in flash, checked before anything touches a board.

A plan is a firmware (always at 0x0, written with kflash's sha256 header) and any number of
kmodels at 4 KiB-aligned offsets. `build_plan` refuses anything that would leave the board with
a model its firmware cannot load, files that overwrite each other, or data past the end of flash,
and warns about placements that are legal but risky.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from k210.core import firmwares
from k210.core.errors import BadInputError
from k210.core.fsutil import require_file, sha256_file

from .bootimage import boot_image_problem
from .layout import (
    FIRMWARE_OVERHEAD,
    FLASH_SIZE,
    KFLASH_BLOCK_SIZE,
    MAIXPY_KMODEL_ADDRESS,
    SECTOR_SIZE,
    blocks_spanned,
    sectors_spanned,
)

# --firmware keys -> loader keys (k210.core.firmwares: the one registry)
RUNNERS = {fw.key: fw.loader_key for fw in firmwares.FIRMWARES.values()}

_ELF_MAGIC = b"\x7fELF"
_ZIP_MAGIC = b"PK"


@dataclass(frozen=True)
class FlashItem:
    """One file and the flash range it will occupy."""

    kind: str  # "firmware" or "kmodel"
    path: Path
    address: int
    size: int  # bytes in the file
    sha256: str
    package_name: str  # its name inside the .kfpkg
    kmodel_version: int | None = None
    kmodel_modules: tuple[str, ...] = ()

    @property
    def sha256_prefix(self) -> bool:
        """kflash wraps firmware in [flags][length][data][sha256]; raw data goes in as it is."""
        return self.kind == "firmware"

    @property
    def footprint(self) -> int:
        return self.size + (FIRMWARE_OVERHEAD if self.sha256_prefix else 0)

    @property
    def end(self) -> int:
        return self.address + self.footprint

    @property
    def label(self) -> str:
        return f"{self.kind} {self.path.name}"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "package_name": self.package_name,
            "address": self.address,
            "address_hex": f"0x{self.address:06X}",
            "end": self.end,
            "end_hex": f"0x{self.end:06X}",
            "size": self.size,
            "flash_bytes": self.footprint,
            "sha256_prefix": self.sha256_prefix,
            "sha256": self.sha256,
            "kmodel_version": self.kmodel_version,
            "kmodel_modules": list(self.kmodel_modules),
        }


@dataclass
class FlashPlan:
    items: list[FlashItem]
    runner: str
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(item.footprint for item in self.items)

    def to_dict(self) -> dict:
        return {
            "firmware": self.runner,
            "flash_size": FLASH_SIZE,
            "total_bytes": self.total_bytes,
            "items": [item.to_dict() for item in self.items],
            "warnings": list(self.warnings),
        }

    def describe(self, *, with_warnings: bool = True) -> str:
        lines = [f"flash plan for firmware '{self.runner}': {len(self.items)} file(s), {self.total_bytes:,} bytes"]
        for item in self.items:
            extra = " + 37 B sha256 header" if item.sha256_prefix else ""
            version = f" v{item.kmodel_version}" if item.kmodel_version is not None else ""
            modules = f" [{', '.join(item.kmodel_modules)}]" if item.kmodel_modules else ""
            lines.append(
                f"  0x{item.address:06X}-0x{item.end:06X}  {item.kind}{version:<4} {item.path.name}"
                f"  {item.size:,} B{extra}{modules}"
            )
        if with_warnings:
            lines.extend(f"warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)


def parse_address(text: str) -> int:
    """'0x300000', '3145728' or '0o14000000' -> int; a one-line error for anything else."""
    try:
        value = int(text.strip().replace("_", ""), 0)
    except ValueError:
        raise BadInputError(f"bad flash address {text!r}: use a number such as 0x300000") from None
    if value < 0:
        raise BadInputError(f"bad flash address {text!r}: must not be negative")
    return value


def build_plan(
    firmware: Path | None,
    kmodels: list[tuple[Path, int]],
    runner: str = "maixpy",
    force: bool = False,
) -> FlashPlan:
    """Check every file and placement; raise BadInputError naming every problem found. force: write a firmware
    file that does not look like a K210 boot image (bootimage.py) all the same."""
    if runner not in RUNNERS:
        raise BadInputError(f"unknown firmware {runner!r}: choose one of {', '.join(RUNNERS)}")
    if firmware is None and not kmodels:
        raise BadInputError("nothing to flash: give --firmware-bin FILE.bin and/or a KMODEL")

    problems: list[str] = []
    warnings: list[str] = []
    names = _PackageNames()
    items: list[FlashItem] = []
    if firmware is not None:
        items.append(_firmware_item(firmware, names, problems, force))
    for path, address in kmodels:
        item = _kmodel_item(path, address, runner, names, problems, warnings)
        if item is not None:
            items.append(item)

    for item in items:
        problems.extend(_placement_problems(item))
    problems.extend(_overlaps(items))
    if problems:
        raise BadInputError("; ".join(problems))

    warnings.extend(_placement_warnings(items, runner, has_firmware=firmware is not None))
    items.sort(key=lambda item: item.address)
    return FlashPlan(items, runner, warnings)


def _firmware_item(path: Path, names: _PackageNames, problems: list[str], force: bool = False) -> FlashItem:
    path = require_file(path, "firmware")
    head = _head(path)
    size = path.stat().st_size
    if size == 0:
        problems.append(f"firmware {path.name} is empty")
    elif head.startswith(_ELF_MAGIC):
        problems.append(f"firmware {path.name} is an ELF file; flash the .bin made from it (objcopy -O binary)")
    elif head.startswith(_ZIP_MAGIC):
        problems.append(f"firmware {path.name} is a zip/.kfpkg; give the .bin inside it")
    elif head.startswith(b"LDMK"):
        problems.append(f"firmware {path.name} is a kmodel; pass it as KMODEL --address ADDR")
    elif not force and (problem := boot_image_problem(path.name, path.read_bytes())):
        problems.append(f"{problem} (--force writes it anyway)")
    return FlashItem("firmware", path, 0, size, sha256_file(path), names.take(path.name))


def _kmodel_item(
    path: Path,
    address: int,
    runner: str,
    names: _PackageNames,
    problems: list[str],
    warnings: list[str],
) -> FlashItem | None:
    from k210.converters.kmodel import parse_kmodel

    path = require_file(path, "kmodel")
    try:
        info = parse_kmodel(path.read_bytes())
    except BadInputError as exc:
        problems.append(f"kmodel {path.name}: {exc}")
        return None
    refusal = firmwares.cannot_load(runner, info.version)
    if refusal:
        problems.append(f"kmodel {path.name} is {refusal}")
    elif len(firmwares.get(runner).builds) > 1:  # e.g. CanMV: v3/v4 on main, v5 on feat/kpu
        build = firmwares.get(runner).build_for(info.version)
        warnings.append(f"kmodel {path.name} is v{info.version}: {firmwares.get(runner).name} loads it only in "
                        f"its {build.name} build")
    return FlashItem(
        "kmodel",
        path,
        address,
        path.stat().st_size,
        sha256_file(path),
        names.take(path.name),
        kmodel_version=info.version,
        kmodel_modules=tuple(module.type for module in info.modules),
    )


def _placement_problems(item: FlashItem) -> list[str]:
    problems = []
    if item.address % SECTOR_SIZE:
        problems.append(
            f"{item.label} at 0x{item.address:X} is not on a 4 KiB sector boundary "
            f"(try 0x{item.address - item.address % SECTOR_SIZE:X} or 0x{_round_up(item.address, SECTOR_SIZE):X})"
        )
    if item.end > FLASH_SIZE:
        problems.append(
            f"{item.label} at 0x{item.address:X} ends at 0x{item.end:X}, "
            f"past the end of the 16 MiB flash (0x{FLASH_SIZE:X})"
        )
    if item.kind == "kmodel" and item.address < SECTOR_SIZE:
        problems.append(f"{item.label} at 0x{item.address:X} would overwrite the firmware's boot header at 0x0")
    if item.kind == "kmodel" and item.size == 0:
        problems.append(f"{item.label} is empty")
    return problems


def _overlaps(items: list[FlashItem]) -> list[str]:
    """Two files collide if they share a 4 KiB sector: writing one erases the other's bytes there."""
    problems = []
    ordered = sorted(items, key=lambda item: item.address)
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            if set(sectors_spanned(first.address, first.footprint)) & set(
                sectors_spanned(second.address, second.footprint)
            ):
                problems.append(
                    f"{first.label} (0x{first.address:X}-0x{first.end:X}) and {second.label} "
                    f"(0x{second.address:X}-0x{second.end:X}) overlap; move {second.path.name} to "
                    f"0x{_round_up(first.end, KFLASH_BLOCK_SIZE):X} or later"
                )
    return problems


def _placement_warnings(items: list[FlashItem], runner: str, *, has_firmware: bool) -> list[str]:
    warnings = []
    for item in items:
        spiffs = firmwares.get(runner).spiffs_start
        if spiffs is not None and item.end > spiffs:
            warnings.append(
                f"{item.label} (0x{item.address:X}-0x{item.end:X}) reaches into MaixPy's SPIFFS /flash file "
                f"system at 0x{spiffs:X}: the firmware may see it as corrupt and reformat it, "
                f"erasing the model"
            )
        below_firmware_limit = item.kind == "kmodel" and item.address < MAIXPY_KMODEL_ADDRESS
        if below_firmware_limit and not has_firmware and firmwares.get(runner).repl:
            warnings.append(
                f"{item.label} at 0x{item.address:X} is below 0x{MAIXPY_KMODEL_ADDRESS:X}, where MaixPy/CanMV "
                f"firmware images (1-3 MiB) live; check the installed firmware's size"
            )
        if item.address % KFLASH_BLOCK_SIZE:
            warnings.append(
                f"{item.label} at 0x{item.address:X} is not on a 64 KiB boundary: kflash writes 64 KiB frames "
                f"and its stub may erase whole 64 KiB blocks, so keep other data out of "
                f"0x{item.address - item.address % KFLASH_BLOCK_SIZE:X}-0x{item.address:X}"
            )
    ordered = sorted(items, key=lambda item: item.address)
    for first, second in zip(ordered, ordered[1:]):
        shared = set(blocks_spanned(first.address, first.footprint)) & set(
            blocks_spanned(second.address, second.footprint)
        )
        if shared:
            warnings.append(
                f"{first.label} and {second.label} share the 64 KiB block at 0x{min(shared) * KFLASH_BLOCK_SIZE:X}; "
                f"if kflash's stub erases whole blocks, writing one can wipe the other"
            )
    return warnings


class _PackageNames:
    """Unique, plain member names for the .kfpkg (kflash joins them onto a temp dir)."""

    def __init__(self) -> None:
        self._taken: set[str] = {"flash-list.json"}

    def take(self, name: str) -> str:
        clean = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "file"
        stem, dot, suffix = clean.partition(".")
        candidate, counter = clean, 2
        while candidate.lower() in self._taken:
            candidate = f"{stem}-{counter}{dot}{suffix}"
            counter += 1
        self._taken.add(candidate.lower())
        return candidate


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def _round_up(value: int, unit: int) -> int:
    return (value + unit - 1) // unit * unit
