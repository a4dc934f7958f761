"""`k210 flash`: write firmware and kmodels into a K210's SPI flash with kflash, after checking the plan."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  k210 flash --firmware maixpy.bin
  k210 flash --kmodel model.kmodel --address 0x300000 --runner maixpy
  k210 flash --firmware maixpy.bin --kmodel a.kmodel --address 0x300000 --kmodel b.kmodel --address 0x500000
  k210 flash --kmodel model.kmodel --runner c --dry-run --json
exit codes: 0 flashed, 1 the flash failed, 2 bad input (files, addresses, port)"""


class _KmodelAction(argparse.Action):
    """--kmodel FILE starts an entry; a following --address ADDR completes it."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(getattr(namespace, self.dest) or [])
        entries.append([value, None])
        setattr(namespace, self.dest, entries)


class _AddressAction(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(getattr(namespace, self.dest) or [])
        if not entries or entries[-1][1] is not None:
            parser.error("--address must follow the --kmodel FILE it places")
        entries[-1] = [entries[-1][0], value]
        setattr(namespace, self.dest, entries)


def add_parser(subparsers) -> None:
    from k210.host.flash.kflash_driver import DEFAULT_STALL_TIMEOUT, KFLASH_BOARDS
    from k210.host.flash.layout import IO_MODES
    from k210.host.flash.plan import RUNNERS

    parser = subparsers.add_parser(
        "flash",
        help="write firmware and kmodels into the board's SPI flash (kflash)",
        description="Check a flash plan (kmodel version vs runner, alignment, overlaps, 16 MiB limit), pack it "
        "as a .kfpkg and write it with kflash. Firmware goes to 0x0; kmodels go where --address says.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", help="serial port or device (default: the one CH340/FT2232/CH552 board found)")
    parser.add_argument(
        "--board",
        choices=("auto", *KFLASH_BOARDS),
        default="auto",
        help="kflash board preset: how DTR/RTS reset the board into ISP mode (default: try them all)",
    )
    parser.add_argument("--baud", type=int, help="baud rate for writing (default 1500000; 115200 with --slow)")
    parser.add_argument(
        "--slow",
        action="store_true",
        help="most compatible mode: no boot-ROM baud switch and 115200 baud unless --baud is given",
    )
    parser.add_argument("--firmware", type=Path, metavar="FILE.bin", help="firmware image, written at 0x0")
    parser.add_argument(
        "--kmodel",
        action=_KmodelAction,
        dest="kmodels",
        default=[],
        metavar="FILE",
        help="kmodel to write; repeat for several (each followed by its --address)",
    )
    parser.add_argument(
        "--address",
        action=_AddressAction,
        dest="kmodels",
        metavar="ADDR",
        help="flash offset of the preceding --kmodel (default 0x300000, MaixPy's convention)",
    )
    parser.add_argument(
        "--runner",
        choices=tuple(RUNNERS),
        default="maixpy",
        help="firmware that will load the kmodel: maixpy (v3/v4), canmv (v3/v4, v5 on feat/kpu), c (v3/v4/v5)",
    )
    parser.add_argument("--io-mode", choices=IO_MODES, default="dio", help="SPI mode flag in the firmware header")
    parser.add_argument("--dry-run", action="store_true", help="check and print the plan; touch no board")
    parser.add_argument("--json", action="store_true", help="print the plan/result as JSON on stdout")
    parser.add_argument("--save-kfpkg", type=Path, metavar="FILE.kfpkg", help="also keep the .kfpkg that is flashed")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=DEFAULT_STALL_TIMEOUT,
        metavar="S",
        help=f"give up when the board makes no progress for S seconds (default {DEFAULT_STALL_TIMEOUT:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show kflash's log on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from k210.host.errors import BadInputError
    from k210.host.flash.kflash_driver import DEFAULT_BAUD, SLOW_BAUD, run_kflash
    from k210.host.flash.kfpkg import write_kfpkg
    from k210.host.flash.layout import MAIXPY_KMODEL_ADDRESS
    from k210.host.flash.plan import build_plan, parse_address
    from k210.host.flash.ports import choose_port
    from k210.host.flash.progress import TqdmProgress

    kmodels = []
    for index, (path, address) in enumerate(args.kmodels):
        if address is None and index > 0:
            raise BadInputError(f"give --address for --kmodel {path} (only the first kmodel defaults to 0x300000)")
        kmodels.append((Path(path), parse_address(address) if address else MAIXPY_KMODEL_ADDRESS))
    plan = build_plan(args.firmware, kmodels, args.runner)
    for warning in plan.warnings:
        print(f"k210 flash: warning: {warning}", file=sys.stderr)

    baud = args.baud or (SLOW_BAUD if args.slow else DEFAULT_BAUD)
    if baud < 9600:
        raise BadInputError(f"--baud {baud} is too low (kflash needs at least 9600)")
    if args.stall_timeout <= 0:
        raise BadInputError("--stall-timeout must be positive")
    board = None if args.board == "auto" else args.board
    settings = {
        "port": args.port or "auto",
        "board": args.board,
        "baud": baud,
        "slow": args.slow,
        "io_mode": args.io_mode,
    }
    if args.save_kfpkg:
        write_kfpkg(plan, args.save_kfpkg)
    if args.dry_run:
        _report(args, plan, settings, status="dry-run")
        return 0

    port = args.port or choose_port(board)
    settings["port"] = port
    if port.startswith("/dev/") and not Path(port).exists():
        raise BadInputError(f"serial port {port} does not exist; is the board plugged in? (see `ls /dev/ttyUSB*`)")
    progress = TqdmProgress()
    log = (lambda line: print(f"kflash: {line}", file=sys.stderr)) if args.verbose else None
    try:
        with tempfile.TemporaryDirectory(prefix="k210-flash-") as tmp:
            package = write_kfpkg(plan, Path(tmp) / "k210-flash.kfpkg")
            result = run_kflash(
                package,
                port=port,
                board=board,
                baud=baud,
                slow=args.slow,
                io_mode=args.io_mode,
                stall_timeout=args.stall_timeout,
                progress=progress,
                log=log,
            )
    finally:
        progress.close()
    settings["seconds"] = round(result.seconds, 2)
    _report(args, plan, settings, status="flashed")
    return 0


def _report(args: argparse.Namespace, plan, settings: dict, *, status: str) -> None:
    if args.json:
        print(json.dumps({"status": status, **settings, "plan": plan.to_dict()}, indent=2))
        return
    print(plan.describe(with_warnings=False))  # warnings already went to stderr
    how = f"via {settings['port']} at {settings['baud']} baud (board {settings['board']})"
    if status == "dry-run":
        saved = f"; .kfpkg saved to {args.save_kfpkg}" if args.save_kfpkg else ""
        print(f"dry run: would flash {how}; nothing was written{saved}")
    else:
        rate = plan.total_bytes / 1024 / settings["seconds"] if settings["seconds"] else 0
        print(f"flashed {len(plan.items)} file(s) {how} in {settings['seconds']:.1f} s ({rate:.0f} KiB/s)")
