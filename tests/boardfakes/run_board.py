"""Run firmware/maixpy/main.py unmodified under CPython as a board on a pseudo-terminal.

    python tests/boardfakes/run_board.py --profile canmv --workdir DIR [--config-json '{...}']

Prints `PTY <path>` once the pseudo-terminal is ready; a host opens that path with pyserial.
REBOOT (machine.reset) restarts main.py from scratch, like a board booting again.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import tty
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIXPY_DIR = HERE.parents[1] / "firmware" / "maixpy"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", choices=("maixpy-v1", "canmv", "canmv-kpu"), required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--config-json", default="{}", help="CONFIG entries overriding the test defaults")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(MAIXPY_DIR))  # the board imports k210wire / k210runner flat
    from boardfakes import maixpy_modules

    master, slave = os.openpty()
    tty.setraw(slave)  # keep the slave open and raw: the host may open and close it at will
    config = {
        "upload_path": str(args.workdir / "upload.kmodel"),
        "input_path": str(args.workdir / "input.bin"),
        "image_path": str(args.workdir / "input.pgm"),
        "boot_counter_path": str(args.workdir / "boots"),
    }
    config.update(json.loads(args.config_json))
    for key in ("model_inputs", "model_outputs"):
        if key in config:
            config[key] = [(d, tuple(s)) for d, s in config[key]]
    print(f"PTY {os.ttyname(slave)}", flush=True)
    while True:
        maixpy_modules.install(args.profile, master)
        sys.modules["k210_config"] = types.SimpleNamespace(CONFIG=config)
        try:
            runpy.run_path(str(MAIXPY_DIR / "main.py"), run_name="__main__")
        except maixpy_modules.FakeReboot:
            continue
        return 0


if __name__ == "__main__":
    sys.exit(main())
