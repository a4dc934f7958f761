"""The JSON files that travel next to models: training metadata and the kmodel's model card."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadInputError


def meta_path(model_path: str | Path) -> Path:
    """`out/xo_mlp.keras` and `out/xo_mlp.pb` share `out/xo_mlp.meta.json`."""
    p = Path(model_path)
    return p.parent / f"{p.stem if p.suffix else p.name}.meta.json"


def card_path(kmodel_path: str | Path) -> Path:
    p = Path(kmodel_path)
    return p.parent / f"{p.name}.json"


def read_json_if_present(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else None


def read_meta(model_path: str | Path) -> dict | None:
    return read_json_if_present(meta_path(model_path))


def read_card(kmodel_path: str | Path) -> dict | None:
    return read_json_if_present(card_path(kmodel_path))
