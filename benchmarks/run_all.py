"""`make bench`: run every benchmark module in benchmarks/, each in a fresh process.

Each benchmark prints its own figures; this only runs them in turn and says which failed.
Pass module names to run a subset: `python -m benchmarks.run_all zoo lint_speed`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    skip = ("__init__", "run_all")
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in skip and not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--out", default="out/bench", help="where benchmarks put their artefacts")
    args = parser.parse_args(argv)
    names = args.names or discover()
    failed = []
    for name in names:
        print(f"\n######## benchmarks.{name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", "--out", f"{args.out}/{name}"],
                               cwd=HERE.parent)
        print(f"######## benchmarks.{name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
