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
