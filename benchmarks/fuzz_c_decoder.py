"""Fuzz the C frame decoder, payload parsers and runner dispatcher (firmware/c/host/fuzz_frame.c) with
libFuzzer + ASan + UBSan, seeded with the shared protocol vectors. Prints executions reached and crashes.

    .venv/bin/python -m benchmarks.fuzz_c_decoder                    # the long run: 600 s
    .venv/bin/python -m benchmarks.fuzz_c_decoder --runs 20000       # about what the test suite does
Build, corpus and crash artefacts go to --out (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
C_DIR = REPO / "firmware" / "c"
VECTORS = REPO / "firmware" / "protocol" / "vectors.json"


@dataclass
class FuzzReport:
    executions: int
    crashes: int
    seconds: float
    exit_code: int
    command: str
    tail: str


def build(build_dir: Path) -> Path:
    subprocess.run(["make", "-s", "-C", str(C_DIR), "fuzz", f"BUILD={build_dir}"], check=True)
    return build_dir / "fuzz_frame"


def write_seeds(corpus: Path) -> int:
    """Seed corpus: every vector frame, the receiver streams, and one framed session (odd first byte)."""
    corpus.mkdir(parents=True, exist_ok=True)
    doc = json.loads(VECTORS.read_text())
    seeds = [bytes.fromhex(v["frame_hex"]) for v in doc["messages"]]
    seeds += [bytes.fromhex(v["stream_hex"]) for v in doc["receiver"]]
    session = bytearray(b"\x01")
    for v in doc["messages"]:
        payload = bytes.fromhex(v["payload_hex"])[:255]
        session += bytes([len(payload), _type_code(v["type"])]) + payload
    seeds.append(bytes(session))
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    return len(seeds)


def _type_code(name: str) -> int:
    from k210.firmware import k210wire as w

    return {v: k for k, v in w.TYPE_NAMES.items()}[name]


def run(runs: int | None, seconds: int | None, build_dir: Path, corpus: Path | None = None,
        timeout: int = 3600) -> FuzzReport:
    exe = build(build_dir)
    corpus = corpus or build_dir / "fuzz-corpus"
    write_seeds(corpus)
    artifacts = build_dir / "fuzz-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "-max_len=4096", f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
    if runs is not None:
        cmd.append(f"-runs={runs}")
    if seconds is not None:
        cmd.append(f"-max_total_time={seconds}")
    cmd.append(str(corpus))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    log = result.stderr
    executions = int(m.group(1)) if (m := re.search(r"stat::number_of_executed_units:\s*(\d+)", log)) else 0
    elapsed = float(m.group(1)) if (m := re.search(r"Done \d+ runs in (\d+) second", log)) else float("nan")
    crashes = len(list(artifacts.glob("crash-*"))) + len(list(artifacts.glob("leak-*"))) + \
        len(list(artifacts.glob("timeout-*")))
    if result.returncode != 0 and crashes == 0:
        crashes = 1  # a sanitizer report or abort() that left no artifact still counts
    return FuzzReport(executions, crashes, elapsed, result.returncode, " ".join(cmd), "\n".join(log.splitlines()[-15:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=None, help="fuzz for this long (default 600 if no --runs)")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="build, corpus and crash artefacts")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None or args.runs is not None else 600
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = (args.out or Path(tmp)).resolve()
        report = run(args.runs, seconds, build_dir)
    print(f"fuzz_frame: {report.executions} executions, {report.crashes} crashes, exit code {report.exit_code}")
    print(f"command: {report.command}")
    if report.crashes:
        print(report.tail)
    return 0 if report.crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
