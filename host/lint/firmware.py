"""Which firmware can load the kmodel a compiler makes (facts file; MaixPy-v1 #423/#434)."""

from __future__ import annotations

from k210.converters.kmodel import FIRMWARE_LOADERS


def firmware_for(kmodel_version: int) -> list[dict]:
    return [
        {"key": key, "name": fw["name"], "loads": kmodel_version in fw["versions"], "note": _note(key, kmodel_version)}
        for key, fw in FIRMWARE_LOADERS.items()
    ]


def _note(key: str, version: int) -> str:
    if version == 5:
        return {
            "maixpy": "kmodel v5 is not loadable: error 2002/2015 or a freeze; compile with nncase 0.2 for MaixPy",
            "canmv": "only the feat/kpu branch (nncase 1.x runtime) loads v5",
            "sdk": "link the K210 runtime of the same nncase release (1.9: runtime-k210.zip into lib/nncase/v1)",
        }.get(key, FIRMWARE_LOADERS[key]["note"])
    if version == 4:
        return {
            "maixpy": "standard builds load v4 (not 'minimum' builds); call kpu.set_outputs() before forward",
            "canmv": "the main branch loads v4",
            "sdk": "the develop branch loads v4",
        }.get(key, FIRMWARE_LOADERS[key]["note"])
    return FIRMWARE_LOADERS[key]["note"]


# The largest input each runner serves (firmware/README.md, "Largest input per firmware"): the
# MicroPython runner's figures were measured in MicroPython 1.10 with each firmware's real GC heap
# (tests/test_micropython_firmwares.py); on the board main.py measures its own heap at boot and says
# it in HELLO's max_input, which `k210 hil` checks before a run. The C runner: K210_MAX_INPUT.
INPUT_LIMITS = {  # (firmware key, kmodel version) -> (bytes, short name)
    ("maixpy", 3): (56992, "MaixPy-v1"), ("maixpy", 4): (56992, "MaixPy-v1"),
    ("canmv", 3): (310944, "CanMV main"), ("canmv", 4): (310944, "CanMV main"),
    ("canmv", 5): (155512, "CanMV feat/kpu"),
    ("sdk", 3): (512 * 1024, "C runner"), ("sdk", 4): (512 * 1024, "C runner"), ("sdk", 5): (512 * 1024, "C runner"),
}


def input_notes(firmware: list[dict], version: int, inputs: list) -> list[str]:
    """Notes for the firmware entries that load the kmodel but cannot take its input; also added to
    each such entry's note."""
    if not inputs or inputs[0].size is None:
        return []
    desc = inputs[0]
    channels = desc.shape[-1] if desc.shape else 1
    notes = []
    for entry in firmware:
        limit = INPUT_LIMITS.get((entry["key"], version))
        if not entry["loads"] or limit is None:
            continue
        size, name = limit
        why = ""
        if entry["key"] == "maixpy" and desc.dtype != "float32":
            why = f"its runner takes float32 only (KPU.forward wants floats), not {desc.dtype}"
        elif name == "CanMV feat/kpu" and (desc.dtype != "uint8" or channels != 1):
            why = "KPU.run takes a grayscale image: one 8-bit channel only"
        elif desc.size > size:
            why = f"its runner serves inputs up to {size} B"
        if why:
            entry["note"] = f"{entry['note']}; {name}: {why}"
            notes.append(f"{name}: input of {desc.size} B: {why}")
    return notes
