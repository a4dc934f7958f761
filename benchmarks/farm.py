"""The board farm, measured on this machine (`python -m benchmarks.farm`).

Two virtual boards (the uint8 X/O kmodel "flashed") behind a labgrid coordinator and an exporter
(ser2net, RFC 2217) on loopback, as tests/farm_support.py sets them up. The same images run:
    --port PTY            the board's pty, straight
    --place k210-a        the same board as a labgrid place: through ser2net's RFC 2217 over TCP
and the same two with both boards. images/s is the streaming rate of `k210 hil`'s report (every
image's bytes, zlib-compressed, through the line and the board; --no-cache, so that no run gets
the images a run before left on a board); wall s is the whole command in this process,
loading the data and the simulator's run included. The coordinator is not on the data path: it
costs once per run (the broker starting, acquiring, the exporter starting ser2net, releasing),
measured on its own as `acquire+release s`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.hil_link import xo_kmodel
from k210.core.textfmt import format_table
from k210.host.cli import main as k210

REPO = Path(__file__).resolve().parents[1]


def _run(name: str, kmodel: Path, out: Path, images: int, where: list[str]) -> dict:
    report_path = out / f"{name}.json"
    started = time.perf_counter()
    # --no-cache: every run sends every image (zlib), so a board's sample cache from the run before cannot help.
    code = k210(["hil", str(kmodel), "--dataset", "xo", "--limit", str(images), "--no-reference", "--workers", "1",
                 "--no-cache", "--json-out", str(report_path), *where])
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{name}: k210 hil exited {code}")
    report = json.loads(report_path.read_text())["result"]
    return {"run": name, "boards": len(report["boards"]), "images": report["count"],
            "images_per_s": report["images_per_s"], "wall_s": wall,
            "bit_identical": report["board_vs_simulator"]["bit_identical"]}


def _round_trip_ms(url: str, count: int = 50) -> float:
    """Median of `count` HELLO round trips (a request and its reply, nothing in flight beside them)."""
    from k210.host.hil.ports import open_port
    from k210.host.hil.session import BoardSession

    session = BoardSession(open_port(url, 1_500_000), connect_timeout=10)
    try:
        session.connect()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            session.connect()
            times.append((time.perf_counter() - started) * 1e3)
    finally:
        session.port.close()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.farm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/bench/farm")
    parser.add_argument("--kmodel", help="a uint8 X/O kmodel (default: train and compile one into OUT/xo)")
    parser.add_argument("--images", type=int, default=1600, help="images per run (the X/O test split has 1600)")
    parser.add_argument("--leases", type=int, default=5, help="acquire+release cycles timed")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kmodel = xo_kmodel(out, args.kmodel)
    sys.path.insert(0, str(REPO / "tests"))
    from farm_support import Farm

    from k210.host.farm.lease import PlaceLease

    with Farm({"k210-a": {"board": "k210"}, "k210-b": {"board": "k210"}}, kmodel=str(kmodel)) as farm:
        place = ["--coordinator", farm.address]
        rows = [_run("port, 1 board", kmodel, out, args.images, ["--port", farm.ptys["k210-a"]]),
                _run("place, 1 board", kmodel, out, args.images, ["--place", "k210-a", *place]),
                _run("port, 2 boards", kmodel, out, args.images,
                     ["--port", farm.ptys["k210-a"], "--port", farm.ptys["k210-b"]]),
                _run("place, 2 boards", kmodel, out, args.images, ["--place", "k210-*", *place])]
        round_trip = {"pty": _round_trip_ms(farm.ptys["k210-a"])}
        with PlaceLease(["k210-a"], coordinator=farm.address) as lease:
            round_trip["rfc2217"] = _round_trip_ms(lease.urls[0])
        leases = []
        for _ in range(args.leases):
            started = time.perf_counter()
            with PlaceLease(["k210-*"], coordinator=farm.address):
                pass
            leases.append(time.perf_counter() - started)
    per_image_us = {n: 1e6 * (1 / rows[i + 1]["images_per_s"] - 1 / rows[i]["images_per_s"]) for i, n in
                    ((0, "1 board"), (2, "2 boards"))}
    summary = {"kmodel": str(kmodel), "runs": rows, "acquire_release_s": leases,
               "rfc2217_us_per_image": per_image_us, "hello_round_trip_ms": round_trip}
    (out / "farm.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(format_table(["run", "boards", "images", "images/s", "wall s", "bit-identical"],
                       [[r["run"], r["boards"], r["images"], f"{r['images_per_s']:.1f}", f"{r['wall_s']:.1f}",
                         f"{r['bit_identical']:.3f}"] for r in rows]))
    print(f"\nRFC 2217 through ser2net adds per image: 1 board {per_image_us['1 board']:.0f} us, "
          f"2 boards {per_image_us['2 boards']:.0f} us (1/images_per_s, place minus port)")
    print(f"HELLO round trip, median of 50: pty {round_trip['pty']:.2f} ms, through ser2net's RFC 2217 "
          f"{round_trip['rfc2217']:.2f} ms")
    print(f"coordinator: acquire+release of both places (broker start included) median "
          f"{statistics.median(leases):.2f} s over {len(leases)} (min {min(leases):.2f}, max {max(leases):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
