"""Which firmware can load the kmodel a compiler makes, and which runner takes its input (k210.core.firmwares)."""

from __future__ import annotations

from k210.core import firmwares


def firmware_for(kmodel_version: int) -> list[dict]:
    """One entry per firmware (keyed by loader key, as model cards and inspect's JSON name them)."""
    return [
        {"key": fw.loader_key, "name": fw.name, "loads": fw.loads(kmodel_version), "note": fw.note_for(kmodel_version)}
        for fw in firmwares.FIRMWARES.values()
    ]


def input_notes(firmware: list[dict], version: int, inputs: list) -> list[str]:
    """Notes for the firmware entries that load the kmodel but cannot take its input; also added to
    each such entry's note. On the board main.py measures its own heap at boot and says it in HELLO's
    max_input, which `k210 hil` checks before a run; these are the registry's measured figures."""
    if not inputs or inputs[0].size is None:
        return []
    desc = inputs[0]
    channels = desc.shape[-1] if desc.shape else 1
    notes = []
    for entry in firmware:
        build = firmwares.get(entry["key"]).build_for(version)
        if not entry["loads"] or build is None:
            continue
        why = input_refusal(build, desc.dtype, channels, desc.size)
        if why:
            entry["note"] = f"{entry['note']}; {build.name}: {why}"
            notes.append(f"{build.name}: input of {desc.size} B: {why}")
    return notes


def output_notes(firmware: list[dict], version: int, outputs: int) -> list[str]:
    """Notes for the firmware entries whose runner returns only the first of a multi-output model's outputs."""
    notes = []
    for entry in firmware:
        build = firmwares.get(entry["key"]).build_for(version)
        if entry["loads"] and build is not None and outputs > 1 and build.outputs == "first":
            entry["note"] = f"{entry['note']}; {build.name}: output 0 only"
            notes.append(f"{build.name}: returns output 0 only of this model's {outputs}")
    return notes


def input_refusal(build: firmwares.Build, dtype: str | None, channels: int, size: int) -> str:
    """Why `build`'s runner cannot take this input, or ''."""
    wrong_dtype = build.input_dtype is not None and dtype != build.input_dtype
    wrong_channels = build.input_channels is not None and channels != build.input_channels
    if wrong_dtype and build.input_channels is None:
        return f"{build.input_rule}, not {dtype}"
    if wrong_dtype or wrong_channels:
        return build.input_rule
    if size > build.max_input:
        return f"its runner serves inputs up to {build.max_input} B"
    return ""
