"""`k210 hil KMODEL --port URL | --place NAME | --boards FILE | --virtual`: run a test set on boards, compare with
TF and the simulator."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
from collections.abc import Iterator

from k210.core import firmwares

from ..cliutil import add_dataset_args, add_firmware_arg, add_json_arg, finish, firmware_of_kmodel
from ..dataargs import add_preprocess_args, add_rule_args, add_save_io_arg, overrides_from, rule_flags_from
from ..vocabulary import add_deprecated

EPILOG = """examples:
  k210 hil out/xo.kmodel --virtual --upload --dataset xo --limit 200
  k210 hil out/xo.kmodel --port /dev/ttyUSB0 --dataset xo --report out/hil
  k210 hil m.kmodel --board-cmd 'firmware/c/build-host/k210_runner_host --pty' --upload --no-reference
  k210 hil out/xo.kmodel --boards boards.yaml --silence-timeout 30 --json-out hil.json"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "hil", help="hardware-in-the-loop: run a test set on boards over serial, compare with TF and the simulator",
        description="Streams the test images to one or more boards running the k210-deploy runner, several "
                    "requests in flight, and compares every board output with TensorFlow and with nncase's "
                    "simulator. Results are journaled as they arrive; --resume continues a killed run.",
        epilog=EPILOG)
    p.add_argument("kmodel", metavar="KMODEL", help="the .kmodel under test")
    where = p.add_argument_group("boards")
    where.add_argument("--port", action="append", default=[], metavar="URL",
                       help="a board's port, anything pyserial opens: /dev/ttyUSB0, socket://HOST:PORT, "
                            "rfc2217://HOST:PORT, loop://. Repeat it to shard the images across boards "
                            "(default: K210_PORT, one URL or several separated by commas)")
    where.add_argument("--virtual", action="store_true", help="start virtual boards (k210 board) and use them")
    where.add_argument("--boards", default=None, metavar="N|FILE",
                       help="with --virtual: how many virtual boards (default 1); else a hardware map, boards.yaml: "
                            "a list of boards (port, baud, firmware, name, reset command), every board whose "
                            "firmware fits the kmodel is used (host/farm/boardmap.py)")
    add_firmware_arg(where, firmwares.VIRTUAL_KEYS, what="firmware of virtual boards")
    where.add_argument("--board-cmd", action="append", default=[], metavar="CMD",
                       help="start a board with this command; it prints its port (or 'PTY path') on stdout, "
                            "e.g. the C runner's host build "
                            "'firmware/c/build-host/k210_runner_host --pty --exit-with-parent' (repeatable; "
                            "default: none)")
    where.add_argument("--baud", type=int, default=None, metavar="BAUD",
                       help="line rate (default K210_BAUD, else 1500000)")
    farm = p.add_argument_group("board farm (labgrid)")
    farm.add_argument("--place", action="append", default=[], metavar="NAME|GLOB|TAG=VALUE",
                      help="acquire this labgrid place and use its serial port (ser2net's RFC 2217 from the "
                           "exporter); repeatable; a glob (k210-*) or tags (board=k210) take every free place that "
                           "matches. Places are released however the run ends (default: none)")
    farm.add_argument("--place-timeout", type=float, default=0.0, metavar="SECONDS",
                      help="wait this long for a place someone else holds (default 0: refuse at once, "
                           "naming who holds it)")
    farm.add_argument("--coordinator", metavar="HOST:PORT",
                      help="labgrid coordinator (default LG_COORDINATOR, else 127.0.0.1:20408)")
    farm.add_argument("--lg-env", metavar="FILE",
                      help="a labgrid environment file: --place then names its targets, whose "
                           "serial ports are on this host (RawSerialPort, USBSerialPort) or NetworkSerialPorts; "
                           "no coordinator, nothing acquired (default: none, places from the coordinator)")
    farm.add_argument("--power-cycle", action="store_true",
                      help="before the run, power-cycle every place that has a power driver (labgrid's, as "
                           "`labgrid-client power cycle`): each board starts from its boot")
    where.add_argument("--faults", metavar="SPEC",
                       help="faults for virtual boards, e.g. corrupt=1e-3,drop=1e-3,dup=1e-4,reset=500; what real "
                            "lines do: dupchunk=0.2,chunk=32 (chunks sent twice), silence_at=N,silence_s=5, "
                            "close_at=N,close_s=2 (the port vanishes), reset_at=N,boot_ms=3000 (host/virtualboard/"
                            "faults.py; default: none)")
    where.add_argument("--fault-seed", type=int, default=0, metavar="N",
                       help="seed of --faults, board i gets seed + i (default 0)")
    where.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="how long to wait for a board's HELLO (default 5)")
    silence = where.add_argument(
        "--silence-timeout", dest="patience", type=float, default=15.0, metavar="SECONDS",
        help="once running, how long a board may be silent (a reset and boot, a line hiccup) or its port gone "
             "(reopened at the same URL meanwhile) before the run fails (default 15)")
    add_deprecated(where, ("--patience",), silence)
    where.add_argument("--allow-lost-boards", action="store_true",
                       help="a board given up mid-run (dead, silent past --silence-timeout) does not fail the run "
                            "when the others ran its images (default: it does, exit 3; the report says each board's "
                            "fate)")
    p.add_argument("--upload", action="store_true",
                   help="send the kmodel to the board (and again after a reset) instead of requiring it there")
    p.add_argument("--reference", metavar="MODEL", help="the TF model it came from (default: from the model card)")
    p.add_argument("--no-reference", action="store_true", help="compare with the simulator only, without TF")
    p.add_argument("--golden-port", action="append", default=[], metavar="URL",
                   help="expected outputs from this trusted board instead of TF and the simulator: every image "
                        "runs on it too, and each output must be bit-identical, else reach --min-cosine "
                        "(repeatable; default: none)")
    p.add_argument("--golden-board-cmd", action="append", default=[], metavar="CMD",
                   help="as --golden-port, a golden board started with this command, as --board-cmd (repeatable; "
                        "default: none)")
    add_dataset_args(p)
    p.add_argument("--split", default="test", choices=("test", "train"), help="which images (default test)")
    p.add_argument("--limit", type=int, metavar="N", help="the first N images only (default: all of them)")
    p.add_argument("--min-cosine", type=float, default=0.99, metavar="COSINE",
                   help="exit 1 when an output that is not class scores has a lower mean cosine (default 0.99)")
    add_save_io_arg(p)
    add_preprocess_args(p)
    p.add_argument("--min-agreement", type=float, default=0.99, metavar="FRACTION",
                   help="exit 1 when board vs TF top-1 agreement is below this (default 0.99)")
    add_rule_args(p)
    add_json_arg(p, old_output=True)
    p.add_argument("--report", metavar="DIR",
                   help="write PNG plots (confusion, disagreements, errors, latency), report.json (the JSON "
                        "envelope) and the journal into DIR (default: no report folder)")
    p.add_argument("--journal", metavar="FILE",
                   help="every result as it arrives, JSON lines (default DIR/journal.jsonl with --report); "
                        "without --resume a run starts it afresh")
    p.add_argument("--resume", action="store_true",
                   help="continue the journal of a run that was stopped: only the missing images are run")
    p.add_argument("--workers", type=int, metavar="N", help="simulator processes (default: one per core)")
    p.add_argument("--no-cache", action="store_true",
                   help="send every image's bytes, never a hash the board keeps (default: use the board's sample "
                        "cache where its HELLO offers one)")
    p.add_argument("--no-zlib", action="store_true", help="never send zlib-compressed images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from k210.core.errors import EXIT_FAILURE, BadInputError, ToolFailure
    from k210.core.extras import INSTALL_ML

    from ..hil.golden import golden_failure_line, render_golden
    from ..hil.report import failure_line, lost_boards_line, render
    from ..hil.run import HilConfig, run_hil

    _resolve_boards(args)
    if not 300 <= args.baud <= 0x500000:
        raise BadInputError("--baud must be between 300 and 5242880")
    if not 0 <= args.min_agreement <= 1:
        raise BadInputError("--min-agreement must be between 0 and 1")
    if not args.patience >= 0 or args.patience == float("inf"):
        raise BadInputError("--silence-timeout must be a number of seconds, 0 or more")
    if not args.connect_timeout > 0 or args.connect_timeout == float("inf"):
        raise BadInputError("--connect-timeout must be a number of seconds above 0")
    if args.faults and not args.virtual:
        raise BadInputError("--faults applies to virtual boards: add --virtual")
    if not (args.golden_port or args.golden_board_cmd) and importlib.util.find_spec("nncase") is None:
        # the expected outputs come from nncase's simulator (and TF), else from a trusted board
        raise BadInputError("hil's expected outputs come from nncase's simulator, which comes with the ml extra "
                            f"({INSTALL_ML}), or from a golden board: add --golden-board-cmd CMD or --golden-port URL")
    cfg = HilConfig(
        kmodel=args.kmodel, ports=args.port, virtual=args.virtual, boards=args.boards, board_cmds=args.board_cmd,
        firmware=firmware_of_kmodel(args.kmodel, args.firmware, firmwares.VIRTUAL_KEYS), reference=args.reference,
        no_reference=args.no_reference, dataset=args.dataset,
        data=args.data, seed=args.seed, split=args.split, limit=args.limit, upload=args.upload, baud=args.baud,
        json_out=args.json_out, report_dir=args.report, journal=args.journal, resume=args.resume,
        faults=args.faults,
        fault_seed=args.fault_seed, min_agreement=args.min_agreement, connect_timeout=args.connect_timeout,
        patience=args.patience,
        workers=args.workers, min_cosine=args.min_cosine, overrides=overrides_from(args), save_io=args.save_io,
        rules=rule_flags_from(args), on_calibration_data=args.on_calibration_data,
        no_cache=args.no_cache, no_zlib=args.no_zlib, golden_ports=args.golden_port, golden_cmds=args.golden_board_cmd,
        allow_lost_boards=args.allow_lost_boards)
    with _farm(args, cfg):
        report = run_hil(cfg)  # writes --json-out FILE.json and DIR/report.json itself, as the run ends
    if "golden" in report:
        render, failure_line = render_golden, golden_failure_line
    if report.get("lost_boards_fail"):  # the report, then one line on stderr: a board failure, exit 3
        finish(args, report, text=lambda: _verdict_first(render(report)), passed=False, exit_code=EXIT_FAILURE,
               inputs={"kmodel": args.kmodel, "reference": report.get("reference")})
        raise ToolFailure(f"{lost_boards_line(report)} (--allow-lost-boards accepts a lost board)")
    return finish(args, report, text=lambda: _verdict_first(render(report)), passed=report["passed"],
                  failure=None if report["passed"] else failure_line(report),
                  inputs={"kmodel": args.kmodel, "reference": report.get("reference")})


def _resolve_boards(args: argparse.Namespace) -> None:
    """--boards N|FILE, and the K210_PORT / K210_BAUD / K210_FIRMWARE defaults, into the plain options."""
    from k210.core.errors import BadInputError

    from ..farm import boardmap

    choices = firmwares.VIRTUAL_KEYS
    args.firmware = args.firmware or boardmap.env_firmware(choices)
    args.board_map, count = [], 1
    if args.boards is not None and args.boards.strip().isdigit():
        count = int(args.boards)
    elif args.boards is not None:
        firmware = firmware_of_kmodel(args.kmodel, args.firmware, choices)
        args.board_map = boardmap.boards_for(boardmap.load_boards(args.boards), firmware, args.boards)
        args.port = args.port + [b.port for b in args.board_map]
    args.boards = count
    default_baud = boardmap.env_baud(1_500_000)
    if args.baud is None:
        args.baud = boardmap.common_baud(args.board_map, default_baud)
    if not (args.port or args.virtual or args.board_cmd or args.place or args.resume):
        args.port = boardmap.env_ports()
    if not 0 <= args.place_timeout < float("inf"):
        raise BadInputError("--place-timeout must be a number of seconds, 0 or more")


@contextlib.contextmanager
def _farm(args: argparse.Namespace, cfg) -> Iterator[None]:
    """Board-map resets before the run; labgrid places held for it and released however it ends."""
    from ..farm import boardmap

    boardmap.reset_boards(args.board_map)
    if not args.place:
        yield
        return
    if args.lg_env:  # only when given: LG_ENV often names a labgrid-client's own set-up
        from ..farm.localenv import local_places

        cfg.ports = [*cfg.ports, *(p.url for p in local_places(args.lg_env, args.place))]
        yield
        return
    from ..farm.lease import PlaceLease

    with PlaceLease(args.place, coordinator=args.coordinator, timeout=args.place_timeout) as lease:
        if args.power_cycle:
            lease.power_cycle_all()
        cfg.ports = [*cfg.ports, *lease.urls]
        cfg.on_board_lost = lease.board_lost
        yield


def _verdict_first(text: str) -> str:
    """The PASS/FAIL line (render's last) also first, before the figures it sums up; 100 columns."""
    from ..cliutil import fit_width

    lines = text.splitlines()
    return fit_width("\n".join([lines[-1], *lines])) if lines else text
