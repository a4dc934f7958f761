"""A whole HIL run: boards up, model checked, references computed, images streamed, report written.

Order matters for the user: boards are connected and their model checked first (a wrong port or
model fails in seconds, not after TensorFlow has loaded), then the simulator and TF outputs are
computed while the boards wait, then the images stream with nothing else competing for the CPU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from k210.core.errors import BadInputError, K210Error, ToolFailure
from k210.firmware import k210wire as w

from .handlers import BoardHandler, SerialDevice, board_command, virtual_board
from .journal import BoardResult, Journal
from .model import KModel
from .ports import open_port
from .report import build_report
from .session import BoardSession
from .work import WorkQueue

log = logging.getLogger("k210.hil")

STATS_EVERY_S = 1.0
SPLITS = ("test", "train")


@dataclass
class HilConfig:
    kmodel: str
    ports: list[str] = field(default_factory=list)
    virtual: bool = False
    boards: int = 1
    board_cmds: list[str] = field(default_factory=list)
    firmware: str = "canmv"  # of virtual boards
    virtual_port: str = "pty"  # or socket://127.0.0.1:0
    reference: str | None = None
    no_reference: bool = False  # skip TF even when the model card names the source model
    dataset: str | None = None
    data: str | None = None
    seed: int = 0
    split: str = "test"
    limit: int | None = None
    upload: bool = False
    baud: int = 1_500_000
    json_out: str | None = None
    report_dir: str | None = None
    journal: str | None = None
    resume: bool = False
    faults: str | None = None
    fault_seed: int = 0
    min_agreement: float = 0.99
    min_cosine: float = 0.99  # outputs that are not class scores (boxes, features)
    connect_timeout: float = 5.0
    patience: float = 15.0  # seconds a board may be silent or its port gone before the run fails
    workers: int | None = None
    overrides: Any = None  # converters.preprocess.Overrides from the command line
    save_io: str | None = None  # .npz with the inputs and every output (TF, simulator, board)
    no_cache: bool = False  # never ask a board to keep or reuse samples (PROTOCOL.md 3.5)
    no_zlib: bool = False  # never send zlib streams
    on_board_lost: Callable[[str], None] | None = None  # called with a board's name (its URL) when it is given up
    board_args: list[str] = field(default_factory=list)  # extra `k210 board` options for virtual boards
    golden_ports: list[str] = field(default_factory=list)  # a trusted board's port: expected outputs from it
    golden_cmds: list[str] = field(default_factory=list)  # ... or the command that starts one
    rules: Any = None  # host.judge.verdict.RuleFlags: --output-kind, --tolerance, --outputs, --postprocess
    on_calibration_data: bool = False  # check on the samples the kmodel was calibrated on too
    allow_lost_boards: bool = False  # a board given up mid-run (the others ran its images) does not fail the run

    @property
    def golden(self) -> bool:
        return bool(self.golden_ports or self.golden_cmds)


@dataclass
class _Prepared:
    kmodel: KModel
    reference_path: str | None
    dataset: str
    class_names: list[str]
    labels: np.ndarray | None
    kmodel_inputs: np.ndarray
    reference_inputs: np.ndarray
    inputs: Any = None  # host.inputdata.ModelInputs
    preprocessing: dict | None = None  # the preprocessing spec's to_dict(): the journal binds to its hash


def load_kmodel(cfg: HilConfig) -> tuple[KModel, dict]:
    """The kmodel under test and its model card (empty if there is none)."""
    from k210.core.fsutil import require_file
    from k210.host.sidecars import read_card

    path = require_file(cfg.kmodel, "kmodel")
    try:
        kmodel = KModel.from_bytes(str(path), path.read_bytes())
    except (ValueError, KeyError, BadInputError) as exc:
        if not cfg.golden:
            raise BadInputError(f"{path} is not a kmodel: {exc}") from None
        from .golden import unparsed_kmodel  # the golden board says what its tensors are

        kmodel = unparsed_kmodel(str(path), path.read_bytes())
    if not kmodel.inputs and not cfg.golden:
        raise BadInputError(f"{path}: cannot read its input tensor (kmodel v{kmodel.version})")
    return kmodel, read_card(path) or {}


def dataset_name(cfg: HilConfig, card: dict) -> str:
    """What the run reads: --dataset, --data, or what the kmodel was calibrated on (its card)."""
    from k210.host.verifying import carded_data

    if cfg.dataset or cfg.data:
        return cfg.dataset or str(cfg.data)
    name, data = carded_data(card)
    if not (name or data):
        raise BadInputError("which data? pass --dataset NAME, --data DIR|FILE.npz or --dataset random")
    return name or str(data)


def prepare(cfg: HilConfig, kmodel: KModel, card: dict) -> _Prepared:
    """The inputs as the kmodel and TF each take them (one preprocessing spec), labels, and the TF model."""
    from k210.converters.kmodel import parse_kmodel
    from k210.host.inputdata import DataRequest, load_inputs
    from k210.host.verifying import carded_data, check_exclusions, preprocess_spec, resolve_reference

    reference = resolve_reference(cfg.reference, card, Path(cfg.kmodel), no_reference=cfg.no_reference or cfg.golden)
    if cfg.golden:
        from .golden import input_desc

        kmodel_input = input_desc(kmodel)
    else:
        kmodel_input = parse_kmodel(kmodel.data).inputs[0]
    spec = preprocess_spec(card, kmodel_input, cfg.overrides)
    dataset, data = (cfg.dataset, cfg.data) if (cfg.dataset or cfg.data) else carded_data(card)
    exclude = check_exclusions(card, cfg.on_calibration_data)  # held-out data by default (host/heldout.py)
    inputs = load_inputs(DataRequest(dataset, data, cfg.seed, cfg.split, cfg.limit, exclude=exclude), spec,
                         kmodel_input.shape,
                         class_names=card.get("labels"))
    if not inputs.class_names and card.get("labels"):
        inputs.class_names = list(card["labels"])
    per_image = inputs.kmodel[0].nbytes if len(inputs.kmodel) else 0
    if per_image != kmodel.input_bytes:
        raise BadInputError(f"an input is {per_image} bytes as the kmodel wants it, but its input takes "
                            f"{kmodel.input_bytes}")
    return _Prepared(kmodel, None if reference is None else str(reference), inputs.name, inputs.class_names,
                     inputs.labels, np.ascontiguousarray(inputs.kmodel), inputs.reference, inputs,
                     preprocessing=spec.to_dict())


def _journal_path(cfg: HilConfig) -> Path | None:
    if cfg.journal:
        return Path(cfg.journal)
    if cfg.report_dir:
        return Path(cfg.report_dir) / "journal.jsonl"
    return None


def _handlers(cfg: HilConfig, kmodel: KModel) -> list[BoardHandler]:
    handlers: list[BoardHandler] = [SerialDevice(url) for url in cfg.ports]
    handlers += [board_command(cmd) for cmd in cfg.board_cmds]
    if cfg.virtual:
        for i in range(cfg.boards):
            handlers.append(virtual_board(
                kmodel=None if cfg.upload else kmodel.path,  # without --upload the model is "flashed"
                firmware=cfg.firmware, baud=cfg.baud, faults=cfg.faults, fault_seed=cfg.fault_seed + i,
                port=_virtual_port(cfg), extra=cfg.board_args))
    if not handlers:
        raise BadInputError("which board? pass --port URL (repeatable), --virtual or --board-cmd CMD")
    return handlers


def _virtual_port(cfg: HilConfig) -> str:
    """A virtual board whose port is to vanish needs a socket (a pty would come back under another name)."""
    from k210.host.virtualboard.faults import FaultSpec

    if cfg.virtual_port == "pty" and FaultSpec.parse(cfg.faults).closes:
        return "socket://127.0.0.1:0"
    return cfg.virtual_port


def _connect(handler: BoardHandler, cfg: HilConfig, kmodel: KModel, stop: threading.Event) -> BoardSession:
    url = handler.start()
    session = BoardSession(open_port(url, cfg.baud, cfg.patience), name=url, connect_timeout=cfg.connect_timeout,
                           stop=stop, patience=cfg.patience)
    session.sample_modes = ((0 if cfg.no_zlib else w.MODE_ZLIB)
                            | (0 if cfg.no_cache else w.MODE_KEEP | w.MODE_CACHED))
    try:
        session.connect()
        session.ensure_model(kmodel, cfg.upload)
    except BaseException:
        session.port.close()
        raise
    return session


class _Collector:
    """Results from every board's thread: kept, journaled, counted on the progress bar."""

    def __init__(self, results: dict[int, BoardResult], journal: Journal | None, bar: Any) -> None:
        self.results = results
        self.journal = journal
        self.bar = bar
        self._lock = threading.Lock()

    def sink(self, board: str):
        def on_result(index: int, outputs: list, micros: int) -> None:
            result = BoardResult(index, outputs, micros, board)
            with self._lock:
                if index in self.results:
                    return
                self.results[index] = result
                if self.journal is not None:
                    self.journal.record(result)
                self.bar.update(1)

        return on_result


def _check(cfg: HilConfig) -> None:
    if cfg.resume and not _journal_path(cfg):
        raise BadInputError("--resume needs the journal: pass --journal FILE (or the --report DIR it is in)")
    if cfg.boards < 1:
        raise BadInputError("--boards must be at least 1")
    if cfg.split not in SPLITS:
        raise BadInputError(f"--split must be one of {', '.join(SPLITS)}")
    if cfg.limit is not None and cfg.limit < 1:
        raise BadInputError("--limit must be at least 1")
    if cfg.save_io and not str(cfg.save_io).endswith(".npz"):
        raise BadInputError(f"--save-io {cfg.save_io} should end in .npz")
    if not 0 <= cfg.min_cosine <= 1:
        raise BadInputError("--min-cosine must be between 0 and 1")
    if cfg.golden and cfg.reference:
        raise BadInputError("--reference and a golden board exclude each other: the golden board is the reference")


def _connect_all(handlers: list[BoardHandler], cfg: HilConfig, kmodel: KModel,
                 stop: threading.Event) -> list[BoardSession]:
    """Every board up, answering and running the model; or the first error, with all of them let go."""
    sessions: list[BoardSession] = []
    errors: list[BaseException] = []
    with ThreadPoolExecutor(len(handlers)) as pool:
        for future in [pool.submit(_connect, h, cfg, kmodel, stop) for h in handlers]:
            try:
                sessions.append(future.result())
            except BaseException as exc:
                errors.append(exc)
    if errors:
        for s in sessions:
            s.port.close()
        raise errors[0]
    return sessions


def run_hil(cfg: HilConfig) -> dict[str, Any]:
    _check(cfg)
    kmodel, card = load_kmodel(cfg)
    dataset_name(cfg, card)
    stop = threading.Event()
    handlers: list[BoardHandler] = []
    sessions: list[BoardSession] = []
    journal: Journal | None = None
    golden_handlers: list[BoardHandler] = []
    golden_sessions: list[BoardSession] = []
    try:
        if cfg.golden:  # first: its MODEL_INFO gives the tensors of a kmodel this host cannot parse
            golden_handlers = ([SerialDevice(url) for url in cfg.golden_ports]
                               + [board_command(cmd) for cmd in cfg.golden_cmds])
            golden_sessions = _connect_all(golden_handlers, cfg, kmodel, stop)
            if not kmodel.inputs:
                from .golden import with_board_tensors

                kmodel = with_board_tensors(kmodel, golden_sessions[0].model_info())
        if not cfg.resume:  # boards first: a wrong port or model fails in seconds
            handlers = _handlers(cfg, kmodel)
            sessions = _connect_all(handlers, cfg, kmodel, stop)
        prep = prepare(cfg, kmodel, card)
        count = len(prep.kmodel_inputs)
        identity = {"kmodel_sha256": kmodel.sha256, "dataset": prep.dataset,
                    "preprocessing_sha256": _preprocessing_hash(prep), "split": cfg.split, "seed": cfg.seed,
                    "count": count}
        journal_path = _journal_path(cfg)
        results: dict[int, BoardResult] = {}
        segments: list[dict[str, Any]] = []
        if journal_path is not None and cfg.resume:
            journal, results, segments = Journal.resume(journal_path, identity, kmodel.outputs)
        elif journal_path is not None:
            journal = Journal.start(journal_path, identity)
        remaining = [i for i in range(count) if i not in results]
        if remaining and not handlers:
            handlers = _handlers(cfg, kmodel)
            sessions = _connect_all(handlers, cfg, kmodel, stop)
        golden: dict[int, BoardResult] = {}
        if cfg.golden:  # every image on the golden board too (not journaled: a resumed run runs them again)
            golden_segment = _stream(cfg, prep, golden_sessions, list(range(count)), golden, None, 0, stop)
            simulator, reference = [], None
        else:
            simulator, reference = _expected_outputs(cfg, prep)
        if remaining:
            resumed = ({"resumed": len(results), "dropped": journal.damaged_lines if journal else 0}
                       if cfg.resume else {})
            segments.append(_stream(cfg, prep, sessions, remaining, results, journal, len(segments), stop, resumed))
        missing = [i for i in range(count) if i not in results]
        if missing:
            raise ToolFailure(f"{len(missing)} images have no board result (first: {missing[0]})")
    finally:
        for session in sessions + golden_sessions:
            session.port.close()
        for handler in handlers + golden_handlers:
            handler.stop()
        if journal is not None:
            journal.close()
    if cfg.golden:
        return _golden_report(cfg, kmodel, prep, results, golden, segments, golden_segment["boards"])
    from k210.host.verifying import check_data_summary

    report = build_report(
        kmodel=str(cfg.kmodel), kmodel_sha256=kmodel.sha256, reference_path=prep.reference_path,
        dataset=prep.dataset, split=cfg.split, class_names=prep.class_names, labels=prep.labels,
        reference=reference, simulator=simulator, results=results, segments=segments,
        boards=segments[-1]["boards"] if segments else [], min_agreement=cfg.min_agreement,
        min_cosine=cfg.min_cosine, output_dtypes=[d for d, _ in kmodel.outputs],
        rules=_rules(cfg, card, reference if reference is not None else simulator, prep.class_names),
        check_data=check_data_summary(card, prep.inputs, cfg.on_calibration_data), card=card)
    if cfg.resume:
        report["journal"] = journal_figures(segments)
    judge_boards(report, cfg.allow_lost_boards)
    _write_outputs(cfg, report, results, simulator[0], None if reference is None else reference[0])
    if cfg.save_io:
        _save_io(cfg.save_io, prep, results, simulator, reference)
    return report


def _rules(cfg: HilConfig, card: dict, expected: list[np.ndarray], class_names: list[str]):
    from k210.host.judge.verdict import RuleFlags, rule_set

    flags = cfg.rules or RuleFlags(min_agreement=cfg.min_agreement, min_cosine=cfg.min_cosine)
    return rule_set(flags, card, expected, class_names or card.get("labels"))


def _preprocessing_hash(prep: _Prepared) -> str:
    import hashlib
    import json

    text = json.dumps(prep.preprocessing, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_boards(report: dict[str, Any], allow_lost: bool) -> None:
    """A board given up mid-run fails the run (exit 3: a board failure) unless lost boards are allowed;
    either way the report says which and when (each board's fate, lost_boards_line)."""
    lost = [b for b in report.get("boards", []) if b.get("fate") == "failed"]
    report["boards_lost"] = len(lost)
    report["lost_boards_fail"] = bool(lost) and not allow_lost
    if report["lost_boards_fail"]:
        from .report import lost_boards_line

        report["passed"] = False
        report.setdefault("reasons", []).append(lost_boards_line(report, errors=False))


def exit_code(report: dict[str, Any]) -> int:
    from k210.core.errors import EXIT_CHECK_FAILED, EXIT_FAILURE, EXIT_OK

    if report.get("lost_boards_fail"):
        return EXIT_FAILURE
    return EXIT_OK if report["passed"] else EXIT_CHECK_FAILED


def journal_figures(segments: list[dict[str, Any]]) -> dict[str, int]:
    """What resuming found in the journal, summed over the resumed segments (each says it in its stats)."""
    return {"resumed_results": segments[-1].get("resumed", 0) if segments else 0,
            "damaged_lines_dropped": sum(s.get("dropped", 0) for s in segments)}


def _golden_report(cfg: HilConfig, kmodel: KModel, prep: _Prepared, results: dict[int, BoardResult],
                   golden: dict[int, BoardResult], segments: list[dict[str, Any]],
                   golden_boards: list[dict[str, Any]]) -> dict[str, Any]:
    from k210.host.verifying import save_io

    from .golden import build_golden_report, outputs_of

    count = len(prep.kmodel_inputs)
    report = build_golden_report(kmodel=str(cfg.kmodel), kmodel_sha256=kmodel.sha256, dataset=prep.dataset,
                                 split=cfg.split, results=results, golden=golden, count=count, segments=segments,
                                 golden_boards=golden_boards, min_cosine=cfg.min_cosine,
                                 expected_outputs=len(kmodel.outputs))
    judge_boards(report, cfg.allow_lost_boards)
    _write_outputs(cfg, report, results, np.zeros(count), None)  # no plots: they are of TF/simulator figures
    if cfg.save_io:
        save_io(cfg.save_io, prep.inputs, {"golden": outputs_of(golden, count), "board": outputs_of(results, count)})
    return report


def _expected_outputs(cfg: HilConfig, prep: _Prepared) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Every output of the simulator and (if there is one) of TF, paired in the kmodel's order."""
    from k210.converters.simulate import simulate
    from k210.core.progress import progress

    with progress(len(prep.kmodel_inputs), "simulator", unit="img") as bar:
        outs = simulate(prep.kmodel.data, prep.kmodel_inputs, workers=cfg.workers, progress=bar.update)
    simulator = [o.reshape(len(o), -1) for o in outs]
    reference = None
    if prep.reference_path:
        from k210.converters.reference import load_reference
        from k210.converters.sources import detect
        from k210.core.quiet import preload_tensorflow
        from k210.host.sidecars import read_card
        from k210.host.verifying import clamped_as_carded, pair_outputs

        preload_tensorflow()
        predict = load_reference(detect(prep.reference_path))
        ref = predict(prep.reference_inputs)
        order = pair_outputs(ref, outs)
        paired = clamped_as_carded(read_card(Path(cfg.kmodel)) or {}, [ref[j] for j in order])  # --clamp-output
        reference = [np.asarray(r).reshape(len(r), -1) for r in paired]
    return simulator, reference


def _save_io(path: str, prep: _Prepared, results: dict[int, BoardResult], simulator: list[np.ndarray],
             reference: list[np.ndarray] | None) -> None:
    from k210.host.verifying import save_io

    from .report import board_outputs, outputs_returned

    count = len(simulator[0])
    board = [board_outputs(results, count, k) for k in range(outputs_returned(results, count))]
    sides = {"simulator": simulator, "board": board}
    if reference is not None:
        sides["reference"] = reference
    save_io(path, prep.inputs, sides)


def _stream(cfg: HilConfig, prep: _Prepared, sessions: list[BoardSession], remaining: list[int],
            results: dict[int, BoardResult], journal: Journal | None, segment_id: int,
            stop: threading.Event, resumed: dict[str, int] | None = None) -> dict[str, Any]:
    from k210.core.progress import progress

    work = WorkQueue(remaining)
    payloads = prep.kmodel_inputs

    def payload_of(index: int) -> bytes:
        return payloads[index].tobytes()

    errors: dict[str, BaseException] = {}
    started = time.monotonic()

    def segment() -> dict[str, Any]:
        return {"segment": segment_id, "seconds": time.monotonic() - started,
                "boards": [s.figures() for s in sessions], **(resumed or {})}

    with progress(len(remaining), f"{len(sessions)} board(s)" if len(sessions) > 1 else "board") as bar:
        collector = _Collector(results, journal, bar)

        def serve(session: BoardSession) -> None:
            try:
                session.stream(work.take, work.give_back, payload_of, collector.sink(session.name))
            except BaseException as exc:
                errors[session.name] = exc
                if cfg.on_board_lost is not None:
                    cfg.on_board_lost(session.name)  # e.g. its labgrid place is let go at once
                session.note_failure(exc)  # its fate goes into the report; the run's end says it on stderr
                log.info("%s failed: %s", session.name, exc)

        healthy = list(sessions)
        threads: list[threading.Thread] = []
        final: dict[str, Any] = {}
        try:
            while healthy and len(work) and not stop.is_set():
                threads = [threading.Thread(target=serve, args=(s,), name=f"board {s.name}", daemon=True)
                           for s in healthy]
                for t in threads:
                    t.start()
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(timeout=STATS_EVERY_S / max(1, len(threads)))
                    if journal is not None:
                        journal.record_stats(segment())
                # A board that failed gave its images back: the others take them (another round).
                healthy = [s for s in healthy if s.name not in errors]
        except KeyboardInterrupt:
            stop.set()
            for t in threads:
                t.join(timeout=5)
            raise
        finally:
            final = segment()
            if journal is not None:
                journal.record_stats(final)
    if len(work):
        first = next(iter(errors.values()), None)
        if isinstance(first, K210Error):
            raise first
        raise ToolFailure(f"{len(work)} images not run: {first}") from first
    return final


def _write_outputs(cfg: HilConfig, report: dict[str, Any], results: dict[int, BoardResult], simulator: np.ndarray,
                   reference: np.ndarray | None) -> None:
    from k210.core.fsutil import write_text_atomic
    from k210.host.envelope import build_envelope, to_json

    from .report import board_outputs

    # The same JSON envelope every k210 command writes (host/envelope.schema.json).
    envelope = to_json(build_envelope("hil", report, exit_code=exit_code(report),
                                      inputs={"kmodel": cfg.kmodel, "reference": report.get("reference")})) + "\n"
    if cfg.json_out:
        write_text_atomic(cfg.json_out, envelope)
    if cfg.report_dir:
        from .plots import write_plots

        out = Path(cfg.report_dir)
        micros = np.array([results[i].micros for i in range(len(simulator))], np.float64)
        if "confusion" not in report:  # the plots are of labelled class scores; unlabelled runs get the JSON
            log.warning("no plots: they need labelled class scores (this run has no labels)")
            write_text_atomic(out / "report.json", envelope)
            return
        write_plots(out, report, board_outputs(results, len(simulator)), simulator.astype(np.float64),
                    None if reference is None else reference.astype(np.float64), micros,
                    host_timed=cfg.virtual or bool(cfg.board_cmds))  # their latency is host time
        write_text_atomic(out / "report.json", envelope)
