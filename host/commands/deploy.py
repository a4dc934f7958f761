"""`k210 deploy`: copy the runner, a kmodel and a config onto a MaixPy/CanMV board, verified by sha256."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from k210.core import firmwares
from k210.host.cliutil import add_firmware_arg, add_json_arg
from k210.host.vocabulary import add_deprecated, add_kmodel_positional

EPILOG = """examples:
  k210 deploy                                   # the runner (main.py and its modules) to /flash
  k210 deploy model.kmodel --config model.json --target sd --reset
  k210 deploy --port socket://192.168.1.20:2323 --no-runner-files --config model.json
  k210 deploy model.kmodel --dry-run --json
exit codes: 0 deployed and verified (or the plan checked, with --dry-run), 2 bad input,
3 the board failed (no REPL, a write or a hash check)"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="copy the runner, a kmodel and a config onto a MaixPy/CanMV board (raw REPL)",
        description="Write files into the board's /flash or /sd through the MicroPython raw REPL, check each "
        "one's sha256 on the board, and optionally reset the board so that main.py starts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kmodel_positional(parser, "kmodel to copy (default: none, the runner and config only)", type=Path)
    parser.add_argument("--port", metavar="URL",
                        help="serial port or pyserial URL such as socket://host:port (default: auto-detect)")
    parser.add_argument("--baud", type=int, default=115_200, metavar="BAUD", help="REPL baud rate (default 115200)")
    parser.add_argument("--target", choices=("flash", "sd"), default="flash",
                        help="file system on the board (default flash)")
    add_firmware_arg(parser, firmwares.REPL_KEYS, what="the MicroPython firmware on the board", old=("--runner",))
    parser.add_argument("--kmodel-name", metavar="NAME",
                        help="name for the kmodel on the board (default: its own name)")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="runner config: a JSON object or a .py defining CONFIG (installed as k210_config.py; default: "
        "none)",
    )
    parser.add_argument(
        "--config-name", metavar="NAME", help="name for the config on the board (default k210_config.py)"
    )
    parser.add_argument("--no-runner-files", action="store_true", help="do not copy main.py and the modules it imports")
    parser.add_argument(
        "--runner-dir",
        type=Path,
        metavar="DIR",
        help="take main.py and its modules from DIR (default: the installed firmware's)",
    )
    parser.add_argument("--reset", action="store_true", help="machine.reset() afterwards, which starts main.py")
    parser.add_argument("--dry-run", action="store_true", help="check and print the plan; touch no board")
    add_json_arg(parser)
    reply = parser.add_argument("--reply-timeout", dest="timeout", type=float, default=10.0, metavar="SECONDS",
                                help="how long to wait for each answer of the board (default 10)")
    add_deprecated(parser, ("--timeout",), reply)
    parser.add_argument(
        "--write-pause", type=float, default=10.0, metavar="MS",
        help="pause after each 256-byte write so the board's UART keeps up (default 10; 0 for fast links)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from k210.core.errors import BadInputError
    from k210.host.deploy.plan import build_deploy_plan
    from k210.host.deploy.session import deploy, open_port
    from k210.host.flash.ports import choose_port

    plan = build_deploy_plan(
        target=args.target,
        runner=args.firmware or _firmware_of(args.kmodel),
        runner_dir=args.runner_dir,
        include_runner=not args.no_runner_files,
        kmodel=args.kmodel,
        kmodel_name=args.kmodel_name,
        config=args.config,
        config_name=args.config_name,
    )
    for warning in plan.warnings:
        print(f"k210 deploy: warning: {warning}", file=sys.stderr)
    if args.baud < 9600 or args.timeout <= 0 or args.write_pause < 0:
        raise BadInputError("--baud must be at least 9600, --reply-timeout positive and --write-pause not negative")
    if args.dry_run:
        return _report(args, plan, {"dry_run": True, "port": args.port or "auto"})

    url = args.port or choose_port(None)
    port = open_port(url, args.baud)
    bars: list = []
    try:
        result = deploy(
            plan, port, name=url, reset=args.reset, timeout=args.timeout, write_pause=args.write_pause / 1000,
            progress=lambda item: _bar(item, bars),
        )  # fmt: skip
    finally:
        for bar in bars:
            bar.close()
        port.close()
    return _report(
        args,
        plan,
        {
            "dry_run": False,
            "port": url,
            "seconds": round(result.seconds, 2),
            "reset": result.reset,
            "free_before": result.free_before,
            "listing": result.listing,
        },
    )


def _firmware_of(kmodel: Path | None) -> str:
    """The firmware the kmodel's version calls for: v5 CanMV, v3/v4 MaixPy-v1 (its model card first)."""
    from k210.host.cliutil import firmware_of_kmodel

    return firmware_of_kmodel(kmodel, choices=firmwares.REPL_KEYS)


def _bar(item, bars: list):
    from tqdm import tqdm

    bar = tqdm(total=item.size, desc=item.remote, unit="B", unit_scale=True, unit_divisor=1024,
               file=sys.stderr, disable=None, leave=True)  # fmt: skip
    bars.append(bar)
    return bar.update


def _report(args: argparse.Namespace, plan, outcome: dict) -> int:
    from k210.host.cliutil import finish

    result = {**outcome, "firmware": plan.runner, "plan": plan.to_dict()}
    inputs = [(f.kind, f.local) for f in plan.files if f.kind != "runner"]
    return finish(args, result, text=lambda: _text(plan, outcome), inputs=inputs)


def _text(plan, outcome: dict) -> str:
    if outcome["dry_run"]:
        verdict = f"dry run: would write {len(plan.files)} file(s) through {outcome['port']}; nothing was written"
    else:
        after = ("board reset, main.py starting" if outcome["reset"]
                 else "board left at the REPL (use --reset to start main.py)")
        verdict = (f"deployed and verified {len(plan.files)} file(s) via {outcome['port']} in "
                   f"{outcome['seconds']:.1f} s; {after}")
    return f"{verdict}\n{plan.describe()}"
