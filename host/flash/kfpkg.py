"""Pack a flash plan as a .kfpkg: the zip of files plus flash-list.json that kflash writes at addresses.

kflash 1.1.6 does not parse flash-list.json as plain JSON: it first quotes the address with the
regex `"address": (.*),`, then calls int(address, 0). So the address must be an unquoted number,
on its own line (pretty-printed), and followed by another key. json.dumps(indent=4) with the key
order address, bin, sha256Prefix gives exactly that, and the file stays valid JSON for other tools.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from k210.core.fsutil import atomic_path

from .plan import FlashPlan

FLASH_LIST = "flash-list.json"
FLASH_LIST_VERSION = "0.1.0"


def flash_list_json(plan: FlashPlan) -> str:
    entries = [
        # Key order matters to kflash's regex: "address" must not be the last key.
        {"address": item.address, "bin": item.package_name, "sha256Prefix": item.sha256_prefix}
        for item in plan.items
    ]
    return json.dumps({"version": FLASH_LIST_VERSION, "files": entries}, indent=4) + "\n"


def write_kfpkg(plan: FlashPlan, destination: str | Path) -> Path:
    """Write the .kfpkg atomically; returns its path."""
    destination = Path(destination)
    with atomic_path(destination) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as package:
        package.writestr(FLASH_LIST, flash_list_json(plan))
        for item in plan.items:
            package.write(item.path, arcname=item.package_name)
    return destination
