"""The JSON files that travel next to models: training metadata and the kmodel's model card."""

from __future__ import annotations

import json
from pathlib import Path

from k210.core.errors import BadInputError


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


def board_config(card: dict) -> dict:
    """What the model card tells the runner's `k210_config.CONFIG` (for `k210 deploy` to write).

    `preprocessing` is the card's spec as plain numbers (the board app applies it to camera frames: resize
    to height x width, RGB or grayscale, and sends raw uint8 pixels when `dtype` is uint8, nncase then maps
    them onto input_range and mean/std); `max_input` is the input tensor's size in bytes, so the runner
    preallocates enough (150 528 for 224x224x3 uint8). Empty for a card without a spec (older cards).
    """
    spec = (card.get("preprocessing") or {}).get("spec")
    if not spec:
        return {}
    from k210.converters.preprocess import Preprocess

    checked = Preprocess.from_dict(spec)
    per_value = 1 if checked.dtype == "uint8" else 4
    size = checked.height * checked.width * checked.channels * per_value
    return {"preprocessing": checked.to_dict(), "max_input": size}
