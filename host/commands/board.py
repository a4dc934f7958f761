"""`k210 board`: a virtual K210 board running the real firmware script, on a pty or a TCP socket."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from k210.core import firmwares

from ..cliutil import add_firmware_arg, add_json_arg, firmware_of_kmodel
from ..virtualboard.storage import INFLATE_BPS, SD_BYTES, SD_READ_BPS, SD_WRITE_BPS
from ..vocabulary import add_kmodel_positional

EPILOG = """examples:
  k210 board out/xo.kmodel                            # prints /dev/pts/N: open it as a board's port
  k210 board --firmware maixpy --port socket://127.0.0.1:0 --json
  k210 board out/xo.kmodel --faults corrupt=1e-3,drop=1e-3 --fault-seed 7"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "board", help="run a virtual K210 board (firmware/maixpy/main.py with nncase's simulator as KPU)",
        description="Runs firmware/maixpy/main.py unmodified under CPython with stand-ins for the MicroPython "
                    "modules it uses. Prints the port to open (a /dev/pts path or socket://127.0.0.1:PORT) on "
                    "stdout, then serves until interrupted.",
        epilog=EPILOG)
    add_kmodel_positional(p, "a kmodel 'flashed' at 0x300000 and loaded at boot (default: none, upload one)")
    add_firmware_arg(p, (*firmwares.VIRTUAL_KEYS, "mlperf-tiny"),
                     what="the firmware it plays (mlperf-tiny: an MLPerf-Tiny-style text runner, for benchmarks)")
    p.add_argument("--port", default="pty", metavar="pty|socket://127.0.0.1:PORT",
                   help="the board's end of the line: a pseudo-terminal or a TCP socket, PORT 0: any (default pty)")
    p.add_argument("--baud", type=int, default=1_500_000, metavar="BAUD",
                   help="line rate; both directions carry baud/10 bytes/s (default 1500000)")
    p.add_argument("--faults", metavar="SPEC",
                   help="seeded faults, e.g. corrupt=1e-3,drop=1e-3,dup=1e-4,stall=1e-5,stall_ms=20,reset=500 "
                        "(default: none)")
    p.add_argument("--fault-seed", type=int, default=0, metavar="N", help="seed for --faults (default 0)")
    p.add_argument("--boot-ms", type=float, default=50.0, metavar="MS",
                   help="time a reset takes; bytes sent meanwhile are lost (default 50)")
    p.add_argument("--read-buf-len", type=int, metavar="BYTES", help="UART RX ring in bytes (default 4096, main.py's)")
    p.add_argument("--max-frame", type=int, metavar="BYTES",
                   help="largest frame the runner accepts (default 1024, main.py's)")
    p.add_argument("--workdir", metavar="DIR", help="the board's /sd and /flash (default: a temporary directory)")
    card = p.add_argument_group("sample cache and zlib (speeds: assumptions, see host/virtualboard/storage.py)")
    card.add_argument("--sd-dir", metavar="DIR",
                      help="the SD card's sample cache directory; a later board given the same one finds what an "
                           "earlier run kept (default: inside --workdir, gone at exit)")
    card.add_argument("--sd-bytes", type=int, default=SD_BYTES, metavar="BYTES",
                      help=f"room for cached samples (default {SD_BYTES}); 0: no card, no cache")
    card.add_argument("--sd-write-kbps", type=float, default=SD_WRITE_BPS / 1000, metavar="KBPS",
                      help=f"card write speed, kB/s (default {SD_WRITE_BPS / 1000:g}; 0: instant)")
    card.add_argument("--sd-read-kbps", type=float, default=SD_READ_BPS / 1000, metavar="KBPS",
                      help=f"card read speed, kB/s (default {SD_READ_BPS / 1000:g}; 0: instant)")
    card.add_argument("--sd-cut-at", type=int, default=0, metavar="N",
                      help="power fails halfway through the board's Nth card write (then it reboots); "
                           "default 0: never")
    card.add_argument("--inflate-kbps", type=float, default=INFLATE_BPS / 1000, metavar="KBPS",
                      help=f"uzlib output speed, kB/s (default {INFLATE_BPS / 1000:g}); 0: a firmware without uzlib")
    p.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    add_json_arg(p)  # the envelope (with the port in result.url) as the first line, instead of the bare port
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from k210.core.errors import BadInputError

    from ..virtualboard.board import BoardOptions, VirtualBoard, exit_with_parent
    from ..virtualboard.faults import FaultSpec
    from ..virtualboard.storage import StorageSpec

    if not 300 <= args.baud <= 0x500000:
        raise BadInputError("--baud must be between 300 and 5242880 (MaixPy's limit)")
    if importlib.util.find_spec("nncase") is None:  # found at boot, not at the first inference
        from k210.core.extras import needs_ml_line

        raise BadInputError(needs_ml_line("nncase", "k210 board (its KPU is nncase's simulator)"))
    if args.kmodel:
        _check_kmodel(Path(args.kmodel))
    args.firmware = firmware_of_kmodel(args.kmodel, args.firmware, firmwares.VIRTUAL_KEYS)
    options = BoardOptions(
        firmware=args.firmware, kmodel=Path(args.kmodel) if args.kmodel else None, port=args.port, baud=args.baud,
        faults=FaultSpec.parse(args.faults), fault_seed=args.fault_seed, boot_ms=args.boot_ms,
        workdir=Path(args.workdir) if args.workdir else None, read_buf_len=args.read_buf_len,
        max_frame=args.max_frame, inflate_bps=args.inflate_kbps * 1000,
        storage=StorageSpec(size=args.sd_bytes, write_bps=args.sd_write_kbps * 1000, read_bps=args.sd_read_kbps * 1000,
                            cut_at=args.sd_cut_at, directory=Path(args.sd_dir) if args.sd_dir else None))
    board = VirtualBoard(options)
    if args.exit_with_parent:
        exit_with_parent(board.remove_workdir)
    _exit_cleanly_on_sigterm()
    _dump_stacks_on_sigusr1()
    _print_envelope(args, board.url)
    board.log(f"{args.firmware} firmware on {board.url} at {args.baud} baud"
              + (f", model {args.kmodel} at 0x300000" if args.kmodel else ", no model (upload one)")
              + (f", faults {options.faults.to_text()} seed {args.fault_seed}" if options.faults.active else ""))
    return board.serve_forever()


def _print_envelope(args: argparse.Namespace, url: str) -> None:
    """The bare port, or with --json the envelope on one line (a harness reads it like the bare port); with
    --json-out the envelope in that file too. The board then serves until stopped."""
    from ..envelope import build_envelope, to_json

    result = {"url": url, "firmware": args.firmware, "baud": args.baud, "kmodel": args.kmodel,
              "faults": args.faults}
    envelope = build_envelope("board", result, inputs={"kmodel": args.kmodel})
    print(to_json(envelope, indent=None) if args.json else url, flush=True)
    if args.json_out:
        from k210.core.fsutil import write_text_atomic

        write_text_atomic(args.json_out, to_json(envelope) + "\n")
    args.emitted = True


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (a harness stopping the board) unwinds like Ctrl-C, so the work directory is removed."""
    import signal

    def stop(signum, frame) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def _dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's stack: where a board that stopped answering is stuck."""
    import faulthandler
    import io
    import signal

    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (AttributeError, ValueError, io.UnsupportedOperation):  # no real stderr (tests), or no SIGUSR1
        pass


def _check_kmodel(path: Path) -> None:
    """Any kmodel may be 'flashed' (MaixPy-v1 then refuses a v5 at boot, as the real one does);
    a file that is no kmodel at all is a mistake on the command line."""
    from k210.converters.kmodel import parse_kmodel
    from k210.core.errors import BadInputError

    if not path.is_file():
        raise BadInputError(f"kmodel {path}: no such file")
    try:
        parse_kmodel(path.read_bytes())
    except BadInputError as exc:
        raise BadInputError(f"kmodel {path}: {exc}") from None
