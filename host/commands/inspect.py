"""`k210 inspect FILE.kmodel`: what is inside a kmodel and which firmware can load it."""

from __future__ import annotations

import argparse

from ..cliutil import add_json_arg, finish, firmware_for, format_table

EPILOG = """examples:
  k210 inspect out/xo.kmodel
  k210 inspect face.kmodel --json"""


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="read a kmodel's header (v3/v4/v5): modules, tensors, memory, loaders",
                       description="Reads a kmodel's header without running it: version, modules (KPU or CPU), "
                                   "input and output tensors, memory pools, which firmware can load it, and its "
                                   "model card's labels and preprocessing when there is one.",
                       epilog=EPILOG)
    p.add_argument("kmodel", metavar="KMODEL", help="a .kmodel file")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from k210.converters.kmodel import UnloadableKmodelError, parse_kmodel
    from k210.core.fsutil import require_file

    from ..sidecars import read_card

    path = require_file(args.kmodel, "kmodel")
    try:
        info = parse_kmodel(path.read_bytes())
    except UnloadableKmodelError as exc:
        if not getattr(args, "json", False):  # name the format; the error line says who loads it
            print(f"{path}: {exc.format.name}, made by {exc.format.made_by}")
        raise
    data = info.to_dict()
    card = read_card(path)
    # `firmware` is one firmware name in every command's JSON: here the one this kmodel calls for;
    # which firmware can load it at all is `loaders`.
    data["loaders"] = data.pop("firmware", {})
    data["firmware"] = firmware_for(None, kmodel_version=info.version, card=card)
    if card:
        data["card"] = {k: card.get(k) for k in ("labels", "preprocessing", "quantisation", "memory")}
    return finish(args, data, text=lambda: _text(path, info, data, card), inputs={"kmodel": path})


def _text(path, info, data: dict, card: dict | None) -> str:
    from k210.core import firmwares

    lines = [f"{path}: kmodel v{info.version}, {info.size} bytes, for {data['firmware']} firmware"]
    lines.append("modules: " + ", ".join(info.module_text(m) for m in info.modules))
    rows = [("input", i, t.dtype or "?", t.shape if t.shape is not None else "?", t.size or "?")
            for i, t in enumerate(info.inputs)]
    rows += [("output", i, t.dtype or "?", t.shape if t.shape is not None else info.missing_shape_text, t.size)
             for i, t in enumerate(info.outputs)]
    lines.append(format_table(("tensor", "#", "dtype", "shape", "bytes"), rows))
    if info.mempools:
        lines.append("memory pools: " + ", ".join(f"{k} {v} B" for k, v in info.mempools.items()))
    if info.main_memory is not None:
        lines.append(f"main memory: {info.main_memory} B")
    rows = [(fw.name, "yes" if fw.loads(info.version) else "no", fw.note) for fw in firmwares.FIRMWARES.values()]
    lines.append(format_table(("firmware", "loads it", "note"), rows))
    if card and card.get("labels"):
        lines.append(f"labels: {', '.join(card['labels'])}")
    summary = ((card or {}).get("preprocessing") or {}).get("summary")
    if summary:  # the spec calibration, verify and hil apply; --input-range/--mean/--std/--color override it
        lines.append(f"preprocessing: {summary}")
    return "\n".join(lines)
