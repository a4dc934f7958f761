"""`k210 inspect FILE.kmodel`: what is inside a kmodel and which firmware can load it."""

from __future__ import annotations

import argparse

from ..cliutil import format_table, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="read a kmodel's header (v3/v4/v5): modules, tensors, memory, loaders")
    p.add_argument("kmodel", help="a .kmodel file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from k210.converters.kmodel import FIRMWARE_LOADERS, UnloadableKmodelError, parse_kmodel

    from ..fsutil import require_file
    from ..sidecars import read_card

    path = require_file(args.kmodel, "kmodel")
    try:
        info = parse_kmodel(path.read_bytes())
    except UnloadableKmodelError as exc:
        if not args.json:  # name the format first; the error line then says who loads it
            print(f"{path}: {exc.format.name}, made by {exc.format.made_by}")
        raise
    data = info.to_dict()
    card = read_card(path)
    if card:
        data["card"] = {k: card.get(k) for k in ("labels", "preprocessing", "quantisation", "memory")}
    if args.json:
        print_json(data)
        return 0
    print(f"{path}: kmodel v{info.version}, {info.size} bytes")
    print("modules: " + ", ".join(_module_text(m, info) for m in info.modules))
    rows = [("input", i, t.dtype or "?", t.shape if t.shape is not None else "?", t.size or "?")
            for i, t in enumerate(info.inputs)]
    no_shape = f"? (v{info.version} stores none)"
    rows += [("output", i, t.dtype or "?", t.shape if t.shape is not None else no_shape, t.size)
             for i, t in enumerate(info.outputs)]
    print(format_table(("tensor", "#", "dtype", "shape", "bytes"), rows))
    if info.mempools:
        print("memory pools: " + ", ".join(f"{k} {v} B" for k, v in info.mempools.items()))
    if info.main_memory is not None:
        print(f"main memory: {info.main_memory} B")
    print("firmware:")
    for key, fw in FIRMWARE_LOADERS.items():
        verdict = "loads it" if info.loadable_by(key) else "cannot load it"
        print(f"  {fw['name']}: {verdict} ({fw['note']})")
    if card and card.get("labels"):
        print(f"labels: {', '.join(card['labels'])}")
    return 0


def _module_text(module, info) -> str:
    if info.layers is not None:
        return f"{module.type} ({info.kpu_layers} of {info.layers} layers on the KPU)"
    return f"{module.type} ({'KPU code' if module.type == 'k210' else 'CPU'})"
