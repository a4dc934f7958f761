"""`k210 flash`: write firmware and kmodels into a K210's SPI flash with kflash, after checking the plan."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from k210.host.cliutil import add_json_arg
from k210.host.vocabulary import add_deprecated

EPILOG = """examples:
  k210 flash --firmware-bin maixpy.bin
  k210 flash model.kmodel --address 0x300000 --firmware maixpy
  k210 flash --firmware-bin maixpy.bin a.kmodel --address 0x300000 b.kmodel --address 0x500000
  k210 flash model.kmodel --firmware c --dry-run --json
exit codes: 0 flashed (or the plan checked, with --dry-run), 2 bad input (files, addresses, port),
3 the board or kflash failed"""


class _KmodelAction(argparse.Action):
    """A KMODEL starts an entry; a following --address ADDR completes it. Each bare word reaches it through the
    hidden --_kmodel, in its place among the options (host/vocabulary.py rewrite_argv); the positional itself is
    there for the usage line and gets nothing."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(getattr(namespace, self.dest) or [])
        entries += [[v, None] for v in (value if isinstance(value, list) else [value])]
        setattr(namespace, self.dest, entries)


class _AddressAction(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(getattr(namespace, self.dest) or [])
        if not entries or entries[-1][1] is not None:
            parser.error("--address must follow the KMODEL it places")
        entries[-1] = [entries[-1][0], value]
        setattr(namespace, self.dest, entries)


class _FirmwareAction(argparse.Action):
    """--firmware KIND; an old-style --firmware FILE.bin still means the image (deprecated: --firmware-bin)."""

    def __call__(self, parser, namespace, value, option_string=None):
        from k210.host.flash.plan import RUNNERS

        if value in RUNNERS:
            namespace.firmware = value
        elif value.lower().endswith((".bin", ".elf", ".kfpkg")) or Path(value).exists():
            print("k210 flash: warning: --firmware FILE.bin is now --firmware-bin FILE.bin; "
                  f"--firmware names the firmware kind ({', '.join(RUNNERS)})", file=sys.stderr)
            namespace.firmware_bin = Path(value)
        else:
            parser.error(f"argument --firmware: invalid choice: '{value}' (choose from {', '.join(RUNNERS)})")


def add_parser(subparsers) -> None:
    from k210.core import firmwares
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
    parser.positional_option = "--_kmodel"  # bare words keep their order among the --address options
    parser.add_argument("kmodels", nargs="*", action=_KmodelAction, default=[], metavar="KMODEL",
                        help="kmodel to write, each followed by its --address (default 0x300000 for the first); "
                             "repeat for several (default: none, firmware only)")
    inner = parser.add_argument("--_kmodel", action=_KmodelAction, dest="kmodels", help=argparse.SUPPRESS)
    add_deprecated(parser, ("--kmodel",), inner, "the positional KMODEL")
    parser.add_argument("--port", metavar="PORT",
                        help="serial port or device (default: the one CH340/FT2232/CH552 board found)")
    parser.add_argument(
        "--board",
        choices=("auto", *KFLASH_BOARDS),
        default="auto",
        help="kflash board preset: how DTR/RTS reset the board into ISP mode (default auto: try them all)",
    )
    parser.add_argument("--baud", type=int, metavar="BAUD",
                        help="baud rate for writing (default 1500000; 115200 with --slow)")
    parser.add_argument(
        "--slow",
        action="store_true",
        help="most compatible mode: no boot-ROM baud switch and 115200 baud unless --baud is given",
    )
    parser.add_argument("--firmware-bin", type=Path, metavar="FILE.bin",
                        help="firmware image, written at 0x0; refused unless it looks like a K210 boot image "
                             "(default: none, kmodels only)")
    parser.add_argument("--force", action="store_true",
                        help="write a --firmware-bin that does not look like a K210 boot image all the same")
    parser.add_argument(
        "--address",
        action=_AddressAction,
        dest="kmodels",
        metavar="ADDR",
        help="flash offset of the preceding KMODEL (default 0x300000, MaixPy's convention)",
    )
    parser.add_argument(
        "--firmware",
        action=_FirmwareAction,
        metavar="{" + ",".join(RUNNERS) + "}",
        help=f"firmware that will load the kmodel: {firmwares.choices_help(tuple(RUNNERS))}; "
        "default: what the first kmodel's version calls for (v5: canmv, v3/v4: maixpy)",
    )
    add_deprecated(parser, ("--runner",), next(a for a in parser._actions if "--firmware" in a.option_strings))
    parser.add_argument("--io-mode", choices=IO_MODES, default="dio",
                        help="SPI mode flag in the firmware header (default dio)")
    parser.add_argument("--dry-run", action="store_true", help="check and print the plan; touch no board")
    add_json_arg(parser)
    parser.add_argument("--save-kfpkg", type=Path, metavar="FILE.kfpkg",
                        help="also keep the .kfpkg that is flashed (default: not kept)")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=DEFAULT_STALL_TIMEOUT,
        metavar="SECONDS",
        help=f"give up when the board makes no progress for this long (default {DEFAULT_STALL_TIMEOUT:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show kflash's log on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from k210.core.errors import BadInputError
    from k210.host.flash.kflash_driver import DEFAULT_BAUD, SLOW_BAUD, run_kflash
    from k210.host.flash.kfpkg import write_kfpkg
    from k210.host.flash.layout import MAIXPY_KMODEL_ADDRESS
    from k210.host.flash.plan import build_plan, parse_address
    from k210.host.flash.ports import choose_port
    from k210.host.flash.progress import TqdmProgress

    kmodels = []
    for index, (path, address) in enumerate(args.kmodels):
        if address is None and index > 0:
            raise BadInputError(f"give --address for {path} (only the first kmodel defaults to 0x300000)")
        kmodels.append((Path(path), parse_address(address) if address else MAIXPY_KMODEL_ADDRESS))
    firmware = args.firmware or _firmware_of(kmodels)
    plan = build_plan(args.firmware_bin, kmodels, firmware, force=args.force)
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
        return _report(args, plan, settings, dry_run=True)

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
    return _report(args, plan, settings, dry_run=False)


def _firmware_of(kmodels: list[tuple[Path, int]]) -> str:
    """The firmware the first kmodel's version calls for (its model card's choice first)."""
    from k210.host.cliutil import firmware_of_kmodel

    return firmware_of_kmodel(kmodels[0][0] if kmodels else None)


def _report(args: argparse.Namespace, plan, settings: dict, *, dry_run: bool) -> int:
    from k210.host.cliutil import finish

    result = {"dry_run": dry_run, "firmware": plan.runner, **settings, "plan": plan.to_dict()}
    inputs = [("kmodel" if item.kind == "kmodel" else "firmware_bin", item.path) for item in plan.items]
    return finish(args, result, text=lambda: _text(args, plan, settings, dry_run), inputs=inputs)


def _text(args: argparse.Namespace, plan, settings: dict, dry_run: bool) -> str:
    lines = [plan.describe(with_warnings=False)]  # warnings already went to stderr
    how = f"via {settings['port']} at {settings['baud']} baud (board {settings['board']})"
    if dry_run:
        saved = f"; .kfpkg saved to {args.save_kfpkg}" if args.save_kfpkg else ""
        lines.insert(0, f"dry run: would flash {how}; nothing was written{saved}")
    else:
        rate = plan.total_bytes / 1024 / settings["seconds"] if settings["seconds"] else 0
        lines.insert(0, f"flashed {len(plan.items)} file(s) {how} in {settings['seconds']:.1f} s ({rate:.0f} KiB/s)")
    return "\n".join(lines)
