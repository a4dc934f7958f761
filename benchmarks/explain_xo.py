"""`k210 explain` on a zoo model whose uint8 build is fine: the course's X/O MLP (`python -m benchmarks.explain_xo`).

Trains xo_mlp (or reuses OUT/models/xo_mlp.keras), then runs the command a user would:

    k210 explain OUT/models/xo_mlp.keras --dataset xo --calib 200 --limit 1600 --report OUT/report

and prints its table: every layer's cosine against TFLite, nncase's own dump beside it, the fixes
tried with their agreement. A few minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain_xo", description=__doc__)
    parser.add_argument("--out", default="out/bench/explain_xo")
    parser.add_argument("--limit", type=int, default=1600, help="check images (default: the 1600 test images)")
    args = parser.parse_args(argv)
    out = Path(args.out)

    from k210.host.cli import main as k210

    model = out / "models" / "xo_mlp.keras"
    if not model.exists():
        print(f"$ k210 train xo -o {model.parent}", flush=True)
        if k210(["train", "xo", "-o", str(model.parent)]) != 0:
            return 1
    command = ["explain", str(model), "--dataset", "xo", "--calib", "200", "--limit", str(args.limit),
               "--report", str(out / "report")]
    print(f"$ k210 {' '.join(command)}", flush=True)
    code = k210(command)
    print(f"exit {code}; report: {out / 'report' / 'explain.json'}, plot: {out / 'report' / 'layers.png'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
