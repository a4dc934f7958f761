"""Explain a quantisation loss: which layer, why, and what to do (`k210 explain`).

1. The baseline uint8 build, with nncase's quant-error dump and module regions, run on the checks.
2. Probe builds: intermediate tensors as extra kmodel outputs, simulator vs TFLite at each; first a
   spread of checkpoints, then every layer between the last good one and the first bad one.
3. Per-channel evidence: each layer's channel ranges in TFLite (max / median channel range, how many
   channels get only a few steps of the per-tensor uint8 scale) and its per-channel cosine; the cause
   is the first layer whose channels a per-tensor step wipes, even when its own cosine looks fine.
4. Fixes, each a full build scored like the baseline and each one a `k210 compile` line: other
   calibration methods, more calibration samples, a float input, MSE weight quantisation, the graph
   transforms (equalisation, bias absorption and correction), and the float kmodel as the bound.
5. Notes where the architecture is the problem (residual adds on the KPU, wide activation ranges).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from k210.converters import quant_explain as qx
from k210.converters.transforms import TransformOptions
from k210.core.errors import BadInputError

from .explain_builds import Builds, Once, Race, bound, rankings, summary

Agreement = Callable[[list[np.ndarray], list[np.ndarray]], float]
_JOINS = ("ADD", "SUB", "CONCATENATION", "MUL")  # ops that join branches (residuals, skips)
BRANCH_RATIO = 8.0  # branches whose peaks differ this much share one uint8 scale badly
WIPED_STEPS = 4  # a channel whose whole range fits in this many uint8 steps of its tensor's scale is wiped out


@dataclass
class ExplainData:
    """The inputs of an explanation, each in what the kmodel takes and what TFLite takes."""

    calibration_kmodel: np.ndarray  # [N, *input] the baseline's PTQ samples
    calibration_float: np.ndarray
    checks_kmodel: np.ndarray  # [M, *input] the images agreement is measured on
    checks_float: np.ndarray
    more_calibration: tuple[np.ndarray, np.ndarray] | None = None  # (kmodel, float), several times N
    name: str = "data"
    calibration_hashes: list[str] = field(default_factory=list)  # host.heldout's, for the kept builds' cards
    more_hashes: list[str] = field(default_factory=list)


@dataclass
class ExplainOptions:
    spec: qx.BuildSpec = field(default_factory=qx.BuildSpec)
    probes: int = 24  # tensors per probe build
    probe_images: int = 8  # check images the probes run on
    min_cosine: float = 0.98  # a layer below this is "bad"
    fixes: bool = True
    methods: tuple[str, ...] = ("no_clip", "l2", "kld_m0")
    try_float: bool = True  # the float kmodel: CPU only, slow in the simulator, the bound a fix can reach
    agreement: Agreement | None = None  # default: top-1 agreement of output 0; a mean over inputs of values in 0..1
    agreement_name: str = "top-1 agreement"
    extra: Callable[[list[np.ndarray], list[np.ndarray]], dict] | None = None  # more figures per build
    dump_ir: bool = True  # nncase's module regions: which node runs on the KPU (slower on big models)
    dump_repeats: int = 2  # nncase's dump, run this many times: it varies from build to build
    progress: Callable[[str], None] | None = None
    transforms: bool = True  # try equalisation, bias absorption and bias correction as fixes
    compile_base: list[str] | None = None  # `k210 compile` arguments naming model and data (no fix flags)
    keep: Path | None = None  # write every build's kmodel and card here
    card_base: dict | None = None  # card fields every kept build shares (source, preprocessing, calibration data)
    relu6_pairs: bool = False  # set by explain: the model has ReLU6 pairs equalisation must skip
    clamps: tuple = ()  # --clamp-output: output clamps (transforms.clamp.Clamp) to try, alone and with equalisation
    workers: int | None = None  # builds at once, each an nncase child process (None: one per core)
    cut: bool = True  # stop a fix after its first probe_images inputs when it can no longer win (exact; no --keep)


def top1_agreement(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Share of inputs whose output 0 has the same arg-max (one value: the same side of 0.5)."""
    ref = np.asarray(reference[0]).reshape(len(reference[0]), -1)
    got = np.asarray(candidate[0]).reshape(len(candidate[0]), -1)
    if ref.shape[1] == 1:
        return float(((ref[:, 0] > 0.5) == (got[:, 0] > 0.5)).mean())
    return float((ref.argmax(1) == got.argmax(1)).mean())


def explain(tflite: bytes, input_shape: list[int], data: ExplainData, options: ExplainOptions) -> dict[str, Any]:
    say = options.progress or (lambda _msg: None)
    agreement = options.agreement or top1_agreement
    if options.probes < 2:
        raise BadInputError("--probes must be at least 2")
    started = time.perf_counter()
    graph = qx.graph_layers(tflite)
    reference = _reference_outputs(tflite, graph, data.checks_float)
    probe_n = min(options.probe_images, len(data.checks_kmodel))
    if options.fixes and options.transforms:  # before the fixes start: whether to try ReLU6 as ReLU
        from k210.converters.transforms import graph as transform_graph

        skipped = transform_graph.find_pairs(transform_graph.Model(tflite))[1]
        options = replace(options, relu6_pairs=any("relu6" in s for s in skipped))
    trials = _trials(data, options) if options.fixes else []

    with Builds(options.workers) as builds:
        run = _Run(tflite, input_shape, data, options, reference, agreement, probe_n, builds, Race(), Once(), say)
        # the longest first (the probe rounds follow one another), so that no core idles at the end
        probing = builds.submit(lambda: _probe(run, graph))
        # nncase's clipping calibrations (kld_m0 most, then l2): minutes where no_clip takes seconds
        clipping = [i for i, t in enumerate(trials) if t.spec.quant == "uint8" and t.spec.calibrate_method != "no_clip"]
        slow = sorted(clipping, key=lambda i: not trials[i].spec.calibrate_method.startswith("kld"))
        pending = {i: builds.submit(lambda trial=trials[i]: _run_trial(run, trial)) for i in slow}
        based = builds.submit(lambda: _baseline(run))
        repeats = [builds.submit(lambda: _dump_again(run, graph)) for _ in range(options.dump_repeats - 1)]
        for i in sorted((i for i in range(len(trials)) if i not in pending), key=lambda i: -_expected_cost(trials[i])):
            pending[i] = builds.submit(lambda trial=trials[i]: _run_trial(run, trial))

        say("float ranges of every tensor and channel (TFLite)")
        ranges = qx.tflite_ranges(tflite, data.checks_float[:probe_n], [layer.tensor for layer in graph.layers])
        channels = _channel_ranges(tflite, data.checks_float[:probe_n], graph)
        last = next((t for t in reversed(trials) if t.transforms is not None), None)
        after = None
        if last is not None:  # the transforms one more fix shares (or this thread applies them first)
            applied = run.transformed(last.transforms)
            after = {k: v for k, v in applied.report.items() if k != "tflite"}
            say("channel ranges after the transforms (TFLite)")
            transformed = _channel_ranges(applied.tflite, data.checks_float[:probe_n], graph)

        base, baseline = based.result()
        repeats_cos = [qx.nncase_cosine_by_tensor(graph.layers, r.result()) for r in repeats]
        measured = probing.result()
        done = [pending[i].result() for i in range(len(trials))]  # in the serial order
    timing = summary(builds, started)

    import_cosine = qx.output_cosine([r[:probe_n] for r in reference], _paired(reference, base.import_outputs))
    where = qx.placements(graph.layers, base.regions) if base.regions else _lint_placements(tflite, graph)
    nncase_cos = qx.nncase_cosine_by_tensor(graph.layers, base.nncase_cosines)
    # nncase's dump is not repeatable (measured: one layer read 1.00, 0.78 and 0.94 in three identical
    # builds): a second dump-only build shows the user how far to trust it.
    repeats = [nncase_cos, *repeats_cos]

    rows = []
    for i, layer in enumerate(graph.layers):
        error = measured.get(layer.tensor)
        span = ranges.get(layer.tensor)
        rows.append({
            "index": i, "name": layer.name, "op": layer.opcode, "shape": list(layer.shape),
            "runs_on": where.get(layer.tensor, "?"), "nncase_cosine": nncase_cos.get(layer.tensor),
            "nncase_cosine_runs": [r[layer.tensor] for r in repeats if layer.tensor in r],
            "probed": error is not None,
            "float_min": None if span is None else span.low, "float_max": None if span is None else span.high,
            "float_p999": None if span is None else span.p999,
            "branch_peaks": [ranges[t].peak for t in layer.inputs if t in ranges] if layer.opcode in _JOINS else [],
            **_channel_row(channels.get(layer.tensor)),
            **({} if error is None else {
                "cosine": error.cosine, "max_abs_error": error.max_abs_error,
                "relative_error": error.relative_error, **_channel_cosine_row(error, options.min_cosine)}),
        })
    probed = [r for r in rows if r["probed"]]
    first_bad = next((r for r in probed if r["cosine"] < options.min_cosine), None)
    drop = _largest_drop(probed)

    cause = _cause(rows, graph)
    baseline["compile_command"] = _compile_line(options, options.spec, len(data.calibration_kmodel), None)
    if options.keep is not None:
        _keep(options, "baseline", base.kmodel, baseline, data.calibration_hashes, None)
    fixes, cut = [], []
    for trial, (scored, kmodel) in zip(trials, done):
        if scored.get("cut"):
            cut.append(scored)
            continue
        scored["agreement_change"] = scored["agreement"] - baseline["agreement"]
        if options.keep is not None:
            _keep(options, trial.name, kmodel, scored, trial.hashes, scored.get("transforms"))
        fixes.append(scored)
    if after is not None:
        for row, layer in zip(rows, graph.layers):
            span = transformed.get(layer.tensor)
            row["channel_spread_after"] = None if span is None else span.spread()
    report = {
        "agreement_name": options.agreement_name,
        "checks": len(data.checks_kmodel),
        "probe_images": probe_n,
        "data": data.name,
        "min_cosine": options.min_cosine,
        "baseline": baseline,
        "import_cosine": import_cosine,
        "layers": rows,
        "first_bad": first_bad,
        "largest_drop": drop,
        "fixes": fixes,
        "fixes_cut": cut,
        "timing": timing,
        "nncase_dump_layers": len(base.nncase_cosines),
        "cause": cause,
        "transforms_applied": None if after is None else after,
    }
    report["notes"] = notes(report)
    report["best_fix"] = max(fixes, key=lambda f: (f["agreement"], f["cosine"])) if fixes else None
    buildable = [baseline] + [f for f in fixes if f.get("compile_command") and f["spec"]["quant"] == "uint8"]
    report["best_build"] = max(buildable, key=lambda f: (f["agreement"], f["cosine"]))
    return report


# --- per-channel evidence ------------------------------------------------------------------------


def _channel_ranges(tflite: bytes, inputs: np.ndarray, graph: qx.GraphLayers) -> dict:
    from k210.converters.transforms.measure import channel_ranges

    return channel_ranges(tflite, inputs, [layer.tensor for layer in graph.layers if len(layer.shape) >= 2])


def _channel_row(span) -> dict[str, Any]:
    """How one per-tensor uint8 scale serves the layer's channels (nncase's range holds 0)."""
    if span is None or len(span.spans) < 2:
        return {"channels": None}
    spans = span.spans
    step = (max(float(span.high.max()), 0.0) - min(float(span.low.min()), 0.0)) / 255
    wiped = [int(c) for c in np.flatnonzero(spans <= WIPED_STEPS * step)] if step > 0 else []
    widest = int(spans.argmax())
    return {"channels": len(spans), "channel_spread": span.spread(), "channel_span_max": float(spans.max()),
            "channel_span_median": float(np.median(spans)), "uint8_step": step, "wiped_channels": len(wiped),
            "widest_channel": widest, "widest_low": float(span.low[widest]), "widest_high": float(span.high[widest]),
            "wiped_span_max": float(spans[wiped].max()) if wiped else None}


def _channel_cosine_row(error: qx.LayerError, min_cosine: float) -> dict[str, Any]:
    cosines = error.channel_cosines
    if not cosines:
        return {"channel_cosine_min": None}
    values = np.asarray(cosines)
    return {"channel_cosine_min": float(values.min()), "channel_cosine_median": float(np.median(values)),
            "channels_below": int((values < min_cosine).sum())}


def _cause(rows: list[dict], graph: qx.GraphLayers) -> dict | None:
    """The first layer whose tensor is uint8 on the K210 (it runs on the KPU, or feeds a KPU layer) and
    whose narrow channels get at most WIPED_STEPS steps of the per-tensor scale a wide channel sets."""
    readers: dict[int, list[int]] = {}
    for i, layer in enumerate(graph.layers):
        for t in layer.inputs:
            readers.setdefault(t, []).append(i)
    for row, layer in zip(rows, graph.layers):
        if not row.get("channels") or row["channel_spread"] < BRANCH_RATIO:
            continue
        quantised = row["runs_on"] in ("KPU", "fused") or any(
            rows[j]["runs_on"] in ("KPU", "fused") for j in readers.get(layer.tensor, []))
        if not quantised or row["wiped_channels"] < max(1, row["channels"] // 4):
            continue
        steps = int(np.ceil(row["wiped_span_max"] / row["uint8_step"])) if row["uint8_step"] > 0 else 0
        text = (f"layer {row['index']} {_short(row['name'])} ({row['op']}, {row['runs_on']}): channel "
                f"{row['widest_channel']} spans {row['widest_low']:.3g}..{row['widest_high']:.3g}, "
                f"{row['wiped_channels']} of the other {row['channels'] - 1} span <= {row['wiped_span_max']:.3g}: "
                f"one uint8 step is {row['uint8_step']:.3g}, so they get <= {steps} step(s)")
        if row.get("cosine") is not None:
            text += f" (its cosine {row['cosine']:.4f}"
            if row.get("channel_cosine_min") is not None:
                text += f", worst channel {row['channel_cosine_min']:.4f}"
            text += ")"
        return {"index": row["index"], "name": row["name"], "text": text}
    return None


def _reference_outputs(tflite: bytes, graph: qx.GraphLayers, inputs: np.ndarray) -> list[np.ndarray]:
    values = qx.tflite_tensors(tflite, inputs, graph.output_tensors)
    return [_drop_batch(values[t]) for t in graph.output_tensors]


def _drop_batch(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], *x.shape[2:]) if x.ndim > 1 and x.shape[1] == 1 else x


def _paired(reference: list[np.ndarray], outputs: list[np.ndarray]) -> list[np.ndarray]:
    """nncase keeps TFLite's output order; check it by sizes so a mismatch is said, not mis-scored."""
    if len(outputs) != len(reference):
        raise BadInputError(f"the kmodel has {len(outputs)} outputs, the TFLite graph {len(reference)}")
    paired = []
    for ref, out in zip(reference, outputs):
        if ref[0].size != out[0].size:
            raise BadInputError(f"kmodel output of {out[0].size} values does not match TFLite's {ref[0].size}")
        paired.append(out.reshape(len(out), *ref.shape[1:]))
    return paired


def _score(name: str, spec: qx.BuildSpec, built: qx.Build, reference: list[np.ndarray], outputs: list[np.ndarray],
           agreement: Agreement, samples: int, calibration: str, extra=None) -> dict[str, Any]:
    from k210.converters.kmodel import parse_kmodel

    info = parse_kmodel(built.kmodel)
    return {
        "name": name, "spec": spec.describe(), "calibration": calibration, "calibration_samples": samples,
        "agreement": agreement(reference, outputs), "cosine": qx.output_cosine(reference, outputs),
        "kmodel_bytes": len(built.kmodel), "kpu_code": info.has_kpu_code,
        "compile_and_run_seconds": round(built.seconds, 1),
        **(extra(reference, outputs) if extra else {}),
    }


def _probe(run: _Run, graph: qx.GraphLayers) -> dict[int, qx.LayerError]:
    """Measured error at checkpoints, then at every layer between the last good and the first bad one
    (one round after another: each window depends on the last)."""
    tflite, data, options, n, say = run.tflite, run.data, run.options, run.probe_n, run.say
    layers = graph.layers
    measured: dict[int, qx.LayerError] = {}
    lo, hi = 0, len(layers) - 1  # the window still to look at, as indices into layers
    while True:
        window = list(range(lo, hi + 1))
        chosen = window if len(window) <= options.probes else _spread(window, options.probes)
        chosen = [i for i in chosen if layers[i].tensor not in measured]
        if not chosen:
            break
        tensors = [layers[i].tensor for i in chosen]
        say(f"probe build: {len(tensors)} tensors as outputs (layers {chosen[0]}..{chosen[-1]})")
        built = qx.build(qx.with_outputs(tflite, tensors), options.spec, input_shape=run.input_shape,
                         calibration=run.file(data.calibration_kmodel),
                         inputs=run.builds.array("checks-probed", data.checks_kmodel[:n]))
        run.builds.timed(f"probe build ({len(tensors)} tensors)", built)
        reference = qx.tflite_tensors(tflite, data.checks_float[:n], tensors)
        if len(built.outputs) != len(tensors):
            raise BadInputError(f"the probe kmodel has {len(built.outputs)} outputs for {len(tensors)} tensors")
        channels = {layer.tensor: layer.shape[-1] if layer.shape else None for layer in layers}
        for tensor, out in zip(tensors, built.outputs):
            measured[tensor] = qx.layer_error(reference[tensor], out, channels.get(tensor))
        ordered = [i for i in range(len(layers)) if layers[i].tensor in measured]
        bad = next((i for i in ordered if measured[layers[i].tensor].cosine < options.min_cosine), None)
        if bad is None:
            break
        before = [i for i in ordered if i < bad]
        new_lo = before[-1] + 1 if before else 0
        if bad - new_lo <= 0 or (new_lo, bad) == (lo, hi):
            break
        lo, hi = new_lo, bad
    return measured


def _spread(window: list[int], count: int) -> list[int]:
    picks = np.linspace(0, len(window) - 1, count).round().astype(int)
    return sorted({window[i] for i in picks})


def _largest_drop(probed: list[dict]) -> dict | None:
    best, previous = None, 1.0
    for row in probed:
        fall = previous - row["cosine"]
        if best is None or fall > best[0]:
            best = (fall, row)
        previous = row["cosine"]
    return None if best is None else {**best[1], "drop": best[0]}


def _lint_placements(tflite: bytes, graph: qx.GraphLayers) -> dict[int, str]:
    """Without nncase's regions: lint's rules for where each op runs."""
    from .lint import lint_tflite

    ops = lint_tflite(tflite, compiler="nncase1.9", quant="uint8").to_dict().get("ops", [])
    by_index = {i: op.get("placement", "?") for i, op in enumerate(ops)}  # lint lists ops in graph order
    return {layer.tensor: str(by_index.get(layer.op_index, "?")).replace("kpu-partial", "KPU").replace(
        "kpu", "KPU").replace("cpu", "CPU") for layer in graph.layers}


@dataclass
class _Trial:
    name: str
    spec: qx.BuildSpec
    calibration: np.ndarray
    checks: np.ndarray
    calibration_name: str
    transforms: TransformOptions | None = None
    buildable: bool = True  # `k210 compile` can make this build (calibrating on the checks is a diagnosis only)
    hashes: list[str] = field(default_factory=list)


def _trials(data: ExplainData, options: ExplainOptions) -> list[_Trial]:
    base = options.spec
    n = len(data.calibration_kmodel)
    trials = [_Trial(f"calibration method {m}", replace(base, calibrate_method=m), data.calibration_kmodel,
                     data.checks_kmodel, "baseline", hashes=data.calibration_hashes)
              for m in options.methods if m != base.calibrate_method]
    if data.more_calibration is not None:
        more_k, _ = data.more_calibration
        trials.append(_Trial(f"{len(more_k)} calibration samples (baseline {n})", base, more_k, data.checks_kmodel,
                             "more samples", hashes=data.more_hashes))
    trials.append(_Trial(f"calibrated on the {len(data.checks_kmodel)} check inputs themselves", base,
                         data.checks_kmodel, data.checks_kmodel, "check inputs", buildable=False))
    if base.input_type == "uint8":
        trials.append(_Trial("float32 input (no uint8 input step)", replace(base, input_type="float32", mean=None,
                                                                            std=None),
                             data.calibration_float, data.checks_float, "baseline", hashes=data.calibration_hashes))
    mse = replace(base, use_mse_quant_w=True)
    trials.append(_Trial("weights quantised by least squares (use_mse_quant_w)", mse, data.calibration_kmodel,
                         data.checks_kmodel, "baseline", hashes=data.calibration_hashes))
    if options.transforms:
        for name, transforms, spec in (
                ("cross-layer equalisation", TransformOptions(equalize=True), base),
                ("equalisation + high-bias absorption", TransformOptions(equalize=True, absorb_bias=True), base),
                ("equalisation + bias absorption + bias correction (dfq)",
                 TransformOptions(equalize=True, absorb_bias=True, bias_correct=True), base),
                ("dfq + least-squares weights", TransformOptions(equalize=True, absorb_bias=True,
                                                                 bias_correct=True), mse)):
            trials.append(_Trial(name, spec, data.calibration_kmodel, data.checks_kmodel, "baseline", transforms,
                                 hashes=data.calibration_hashes))
        if options.relu6_pairs:
            trials.append(_Trial("dfq with ReLU6 as ReLU where the calibration data never reach 6", base,
                                 data.calibration_kmodel, data.checks_kmodel, "baseline", TransformOptions(
                                     equalize=True, absorb_bias=True, bias_correct=True, relu6_as_relu=True),
                                 hashes=data.calibration_hashes))
        dfq_clamped = TransformOptions(equalize=True, absorb_bias=True, clamps=options.clamps)
        for name, transforms, spec in (("outputs clamped", TransformOptions(clamps=options.clamps), base),
                                       ("equalisation + bias absorption + outputs clamped", dfq_clamped, base),
                                       ("equalisation + bias absorption + outputs clamped, l2 calibration",
                                        dfq_clamped, replace(base, calibrate_method="l2"))):
            if options.clamps and (spec is base or base.calibrate_method != "l2"):  # scored as the clamp passes
                trials.append(_Trial(name, spec, data.calibration_kmodel, data.checks_kmodel, "baseline", transforms,
                                     hashes=data.calibration_hashes))
    if options.try_float:
        trials.append(_Trial("float kmodel (no PTQ: CPU only, no KPU)",
                             replace(base, quant="float", input_type="float32", mean=None, std=None),
                             data.calibration_float, data.checks_float, "none"))
    return trials


class _Run:
    """What every build of one explanation shares: the inputs, the shared files, the race of the fixes."""

    def __init__(self, tflite: bytes, input_shape: list[int], data: ExplainData, options: ExplainOptions,
                 reference: list[np.ndarray], agreement: Agreement, probe_n: int, builds: Builds, race: Race,
                 transforms: Once, say: Callable[[str], None]) -> None:
        self.tflite, self.input_shape, self.data, self.options = tflite, input_shape, data, options
        self.reference, self.agreement, self.probe_n, self.say = reference, agreement, probe_n, say
        self.builds, self.race, self.transforms = builds, race, transforms
        self.model = builds.model("model", tflite)
        self.cut = options.cut and options.keep is None  # a kept build needs every figure for its card

    def file(self, values: np.ndarray) -> Path:
        """One of explain's arrays (calibration, checks: the same object every build names) as a shared file."""
        return self.builds.array(f"array-{id(values)}", values)

    def transformed(self, transforms: TransformOptions):
        from k210.converters.transforms import apply

        return self.transforms.get(transforms, lambda: apply(self.tflite, transforms, self.data.calibration_float))


def _baseline(run: _Run) -> tuple[qx.Build, dict[str, Any]]:
    run.say("baseline build (with nncase's quant-error dump)")
    data = run.data
    base = qx.build(run.model, run.options.spec, input_shape=run.input_shape,
                    calibration=run.file(data.calibration_kmodel), inputs=run.file(data.checks_kmodel),
                    import_inputs=run.builds.array("checks-probed-float", data.checks_float[:run.probe_n]),
                    dump_quant_error=True, dump_ir=run.options.dump_ir)
    run.builds.timed("baseline", base)
    baseline = _score("baseline", run.options.spec, base, run.reference, _paired(run.reference, base.outputs),
                      run.agreement, len(data.calibration_kmodel), "baseline", run.options.extra)
    run.race.finished(rankings(baseline=True), (baseline["agreement"], baseline["cosine"]))
    return base, baseline


def _dump_again(run: _Run, graph: qx.GraphLayers) -> list[tuple[str, float]]:
    run.say("nncase's quant-error dump again (same model, same samples)")
    again = qx.build(run.model, run.options.spec, input_shape=run.input_shape,
                     calibration=run.file(run.data.calibration_kmodel), dump_quant_error=True)
    run.builds.timed("quant-error dump again", again)
    return again.nncase_cosines


def _expected_cost(trial: _Trial) -> float:
    """Rough build time against the baseline's, to start the longest first: the float kmodel is slow in
    the simulator, more samples calibrate longer, transforms are applied first."""
    cost = 1.0 + (0.5 if trial.transforms is not None else 0.0)
    if trial.spec.quant != "uint8":
        cost += 1.0
    return cost * max(1.0, len(trial.calibration) / 64)


def _run_trial(run: _Run, trial: _Trial) -> tuple[dict[str, Any], bytes]:
    """One fix built and scored (its agreement change is the caller's, once the baseline is in); or, when
    it cannot win any ranking after its first inputs, what those said."""
    options, reference = run.options, run.reference
    if trial.transforms is not None and trial.transforms.clamps:  # outside the clamp the build differs on purpose
        from k210.converters.transforms.clamp import clipped_reference

        reference = clipped_reference(run.tflite, list(trial.transforms.clamps), reference)
    model = run.model
    transformed = None
    if trial.transforms is not None:
        transformed = run.transformed(trial.transforms)
        model = run.builds.model(f"transformed-{_slug(repr(trial.transforms))}", transformed.tflite)
    groups = rankings(uint8=trial.spec.quant == "uint8", buildable=trial.buildable)
    first, total = run.probe_n, len(trial.checks)
    head = [r[:first] for r in reference]
    seen: dict[str, Any] = {}

    def decide(outputs: list[np.ndarray]) -> bool:
        paired = _paired(head, outputs)
        seen["agreement"], seen["cosine"] = run.agreement(head, paired), qx.output_cosine(head, paired)
        seen["bound"] = (bound(seen["agreement"], first, total), bound(seen["cosine"], first, total))
        return run.race.can_win(groups, seen["bound"])

    run.say(f"fix: {trial.name}")
    built = qx.build(model, trial.spec, input_shape=run.input_shape, calibration=run.file(trial.calibration),
                     inputs=run.file(trial.checks), first=first,
                     decide=decide if run.cut and 0 < first < total else None)
    run.builds.timed(trial.name, built)
    samples = len(trial.calibration) if trial.spec.quant == "uint8" else 0
    if built.cut:
        run.say(f"fix cut after {first} of {total} inputs (it can no longer beat the best): {trial.name}")
        return {"name": trial.name, "spec": trial.spec.describe(), "calibration": trial.calibration_name,
                "calibration_samples": samples, "cut": True, "inputs_run": first, "inputs": total,
                "agreement_first": seen["agreement"], "cosine_first": seen["cosine"],
                "agreement_at_most": seen["bound"][0], "cosine_at_most": seen["bound"][1],
                "compile_and_run_seconds": round(built.seconds, 1)}, built.kmodel
    scored = _score(trial.name, trial.spec, built, reference, _paired(reference, built.outputs), run.agreement,
                    samples, trial.calibration_name, options.extra)
    run.race.finished(groups, (scored["agreement"], scored["cosine"]))
    scored["compile_command"] = _compile_line(options, trial.spec, samples, trial.transforms) \
        if trial.buildable else None
    if transformed is not None:
        scored["transforms"] = {k: v for k, v in transformed.report.items() if k != "tflite"}
    return scored, built.kmodel


def _compile_line(options: ExplainOptions, spec: qx.BuildSpec, samples: int,
                  transforms: TransformOptions | None) -> str | None:
    """The `k210 compile` command that makes this build (None without the base arguments)."""
    import shlex

    if options.compile_base is None:
        return None
    words = ["k210", "compile", *options.compile_base]
    if spec.quant == "float":
        words += ["--quant", "float"]
    else:
        words += ["--calib", str(samples), "--input-type", spec.input_type]
        if spec.calibrate_method != "no_clip":
            words += ["--calibrate-method", spec.calibrate_method]
        if spec.use_mse_quant_w:
            words.append("--mse-weights")
        if transforms is not None:
            words += transforms.flags()
    return shlex.join(words)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "build"


def _keep(options: ExplainOptions, name: str, kmodel: bytes, scored: dict, hashes: list[str],
          transforms: dict | None) -> None:
    """The build's kmodel and a model card beside it (what compile's card says, for verify and hil)."""
    import os

    from k210.converters.kmodel import parse_kmodel
    from k210.core.fsutil import sha256_file, write_bytes_atomic, write_json_atomic

    from .sidecars import card_path

    folder = options.keep
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(name)}.kmodel"
    write_bytes_atomic(path, kmodel)
    info = parse_kmodel(kmodel)
    base = dict(options.card_base or {})
    source = dict(base.pop("source", None) or {})
    if source.get("path"):
        source.update(path=os.path.relpath(Path(source["path"]).resolve(), folder.resolve()), path_base="card")
    calibration = dict(base.pop("calibration", None) or {})
    spec = scored["spec"]
    card = {
        "card_version": 1,
        "kmodel": {"file": path.name, "sha256": sha256_file(path), "size": len(kmodel), "version": info.version,
                   "modules": [m.type for m in info.modules], "kpu_code": info.has_kpu_code,
                   "loaded_by": info.loaders},
        "source": source or None,
        "inputs": [{"shape": d.shape, "dtype": d.dtype, "layout": "NHWC"} for d in info.inputs],
        "outputs": [{"name": f"output_{i}", "shape": d.shape, "dtype": d.dtype, "layout": "NHWC"}
                    for i, d in enumerate(info.outputs)],
        **base,
        "quantisation": {
            "mode": spec["quant"],
            "calibration": None if spec["quant"] != "uint8" else {
                **calibration, "samples": scored["calibration_samples"], "method": spec["calibrate_method"],
                "use_mse_quant_w": spec["use_mse_quant_w"], "sample_sha256": list(hashes),
                "from": scored["calibration"]},
            "transforms": transforms,
        },
        "built_by": "k210 explain",
        "compile_command": scored.get("compile_command"),
        "explain": {"agreement": scored["agreement"], "cosine": scored["cosine"]},
    }
    if spec["input_type"] == "float32" and isinstance(card.get("preprocessing"), dict):
        card["preprocessing"] = {**card["preprocessing"], "input_type": "float32",
                                 "board_sends": "float32 tensors, already normalised"}
    write_json_atomic(card_path(path), card)
    scored["kept"] = str(path)


# --- what the figures say ----------------------------------------------------------------------


def notes(report: dict[str, Any]) -> list[str]:
    """Plain sentences: where the loss starts, whether the architecture is the cause, what helped."""
    said: list[str] = []
    if report["import_cosine"] < 0.9999:
        said.append(f"nncase's float import already differs from TFLite (output cosine {report['import_cosine']:.4f} "
                    "before any quantisation): the loss is not only quantisation")
    bad = report["first_bad"]
    cause = report.get("cause")
    if cause is not None:
        said.append(f"cause: {cause['text']}; cross-layer equalisation (k210 compile --equalize) evens the "
                    "channels out where the next layer is a conv or dense layer")
    if bad is None:
        said.append(f"every probed layer keeps cosine >= {report['min_cosine']} against TFLite")
    else:
        said.append(f"the error first passes cosine {report['min_cosine']} at layer {bad['index']} "
                    f"{bad['name']} ({bad['op']}, {bad['runs_on']}): cosine {bad['cosine']:.4f}, "
                    f"max abs error {bad['max_abs_error']:.3g}")
        if bad["op"] == "ADD" and bad["runs_on"] in ("KPU", "fused"):
            said.append("architecture: a residual ADD that nncase lowered onto the KPU (concat + 1x1 conv): both "
                        "branches and their sum share uint8 scales, so the narrower branch loses its detail; "
                        "keep branch ranges alike (BatchNorm before the add, ReLU6) or retrain with "
                        "quantisation-aware training")
    upto = bad["index"] if bad is not None else len(report["layers"]) - 1
    joins = [r for r in report["layers"][: upto + 1] if len(r["branch_peaks"]) >= 2
             and min(r["branch_peaks"]) > 0 and max(r["branch_peaks"]) / min(r["branch_peaks"]) >= BRANCH_RATIO]
    for row in joins[:3]:
        peaks = sorted(row["branch_peaks"])
        said.append(f"architecture: layer {row['index']} {_short(row['name'])} ({row['op']}, {row['runs_on']}) joins "
                    f"branches of very different ranges (peaks {peaks[0]:.3g} and {peaks[-1]:.3g}): after it one "
                    f"uint8 step is {(row['float_max'] - row['float_min']) / 255:.3g}, so the narrow branch's "
                    "detail is lost; scale the branches alike in the model (BatchNorm, ReLU6) before the join")
    wide = [r for r in report["layers"][: upto + 1] if _is_wide(r)]
    for row in wide[:3]:
        span = row["float_max"] - row["float_min"]
        said.append(f"architecture: wide activation range at layer {row['index']} {row['name']} "
                    f"({row['float_min']:.3g}..{row['float_max']:.3g}, 99.9% of values within "
                    f"±{row['float_p999']:.3g}): a uint8 step is {span / 255:.3g}; clip it in the model "
                    "(ReLU6, BatchNorm) or calibrate with clipping (l2/kld)")
    spread = [r for r in report["layers"] if len(r["nncase_cosine_runs"]) > 1
              and max(r["nncase_cosine_runs"]) - min(r["nncase_cosine_runs"]) > 0.01]
    if spread:
        runs = spread[0]["nncase_cosine_runs"]
        said.append(f"nncase's quant-error dump is not repeatable: {len(spread)} layer(s) read differently in "
                    f"identical builds (layer {spread[0]['index']}: {', '.join(f'{c:.3f}' for c in runs)})")
    dumped = [r for r in report["layers"] if r["probed"] and r["nncase_cosine"] is not None
              and r["nncase_cosine"] < report["min_cosine"] <= r["cosine"]]
    if dumped:
        row = dumped[0]
        said.append(f"nncase's dump reads {row['nncase_cosine']:.3f} at layer {row['index']} {_short(row['name'])} "
                    f"where the kmodel measures {row['cosine']:.4f}: the dump is nncase's IR evaluator on one "
                    "calibration sample (and, where an activation is fused into a KPU conv, the float value "
                    "before it against the quantised value after it), not what the kmodel computes; trust the "
                    "measured column")
    fixes = report["fixes"]
    base = report["baseline"]
    helped = [f for f in fixes if f["agreement"] > base["agreement"] and f["spec"]["quant"] == "uint8"]
    if base["agreement"] >= 0.999 and bad is None:
        said.append(f"the uint8 build already agrees with TFLite ({report['agreement_name']} "
                    f"{base['agreement']:.4f}): nothing to fix")
    elif fixes and not helped:
        said.append(f"no uint8 fix raised the {report['agreement_name']} above the baseline's "
                    f"{base['agreement']:.4f}")
    elif helped:
        best = max(helped, key=lambda f: (f["agreement"], f["cosine"]))
        said.append(f"best uint8 fix: {best['name']} ({report['agreement_name']} {best['agreement']:.4f}, "
                    f"baseline {base['agreement']:.4f})")
    applied = report.get("transforms_applied")
    if applied and applied.get("skipped"):
        said.append(f"equalisation left {len(applied['skipped'])} layer pair(s) alone, e.g. {applied['skipped'][0]}")
    said.append("outputs are float32 already (nncase dequantises the last layer; output_range applies only to "
                "uint8 outputs)")
    return said


def _is_wide(row: dict) -> bool:
    """Rare values far outside the bulk: the uint8 range is spent on them (a few outliers set the scale)."""
    if row["float_p999"] is None or row["float_p999"] <= 0:
        return False
    peak = max(abs(row["float_min"]), abs(row["float_max"]))
    return peak / row["float_p999"] >= 4


# --- text and plot -------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    from k210.core.textfmt import format_table

    base = report["baseline"]
    name = report["agreement_name"]
    lines = [f"baseline uint8 build ({base['spec']['calibrate_method']}, {base['calibration_samples']} samples, "
             f"{base['spec']['input_type']} input): {name} {base['agreement']:.4f}, output cosine "
             f"{base['cosine']:.4f} on {report['checks']} inputs ({report['data']})",
             f"nncase's float import vs TFLite: output cosine {report['import_cosine']:.6f}", ""]
    rows = []
    cause = (report.get("cause") or {}).get("index")
    after = any(r.get("channel_spread_after") is not None for r in report["layers"])
    for r in report["layers"]:
        mark = ("*" if report["first_bad"] and r["index"] == report["first_bad"]["index"] else "") + \
            ("!" if r["index"] == cause else "")
        rows.append([f"{r['index']}{mark}", _short(r["name"]), r["op"], r["runs_on"],
                     "-" if r["nncase_cosine"] is None else f"{r['nncase_cosine']:.4f}",
                     f"{r['cosine']:.4f}" if r["probed"] else "-",
                     f"{r['channel_cosine_min']:.4f}" if r.get("channel_cosine_min") is not None else "-",
                     f"{r['max_abs_error']:.3g}" if r["probed"] else "-",
                     "-" if r["float_min"] is None else f"{r['float_min']:.3g}..{r['float_max']:.3g}",
                     _spread_text(r.get("channel_spread")) if r.get("channels") else "-",
                     f"{r['wiped_channels']}/{r['channels']}" if r.get("channels") else "-"]
                    + ([_spread_text(r.get("channel_spread_after"))] if after else []))
    lines.append(f"per layer: cosine, worst channel's cosine and max err measured (kmodel in nncase's simulator vs "
                 f"TFLite, {report['probe_images']} inputs); nncase cos from its quant-error dump; ch spread = max "
                 f"channel range / median channel range; wiped = channels within {WIPED_STEPS} uint8 steps of the "
                 "tensor's scale; * first bad, ! cause")
    lines.append(format_table(["#", "layer", "op", "runs on", "nncase cos", "cosine", "worst ch", "max err",
                               "float range", "ch spread", "wiped"] + (["spread after dfq"] if after else []), rows))
    if report["fixes"]:
        lines += ["", "fixes tried"]
        lines.append(format_table(["fix", name, "change", "cosine", "KPU"],
                                  [[f["name"], f"{f['agreement']:.4f}", f"{f['agreement_change']:+.4f}",
                                    f"{f['cosine']:.4f}", "yes" if f["kpu_code"] else "no"]
                                   for f in report["fixes"]]))
    for f in report.get("fixes_cut", []):
        lines.append(f"cut after {f['inputs_run']} of {f['inputs']} inputs: {f['name']} ({name} at most "
                     f"{f['agreement_at_most']:.4f}: it could no longer beat the best)")
    timing = report.get("timing")
    if timing and timing.get("build_seconds"):
        lines.append(f"{len(timing['builds'])} builds, {timing['workers']} at once: {timing['wall_seconds']:.0f} s "
                     f"wall, {timing['build_seconds']:.0f} s of builds (wall / (builds / workers) = "
                     f"{timing['wall_over_builds_per_worker']:.2f})")
    lines += [""] + [f"- {note}" for note in report["notes"]]
    best = report.get("best_build")
    if best is not None and best.get("compile_command"):
        lines += ["", f"best build ({best['name']}: {name} {best['agreement']:.4f}, cosine {best['cosine']:.4f}):",
                  f"  {best['compile_command']}"]
        if best.get("kept"):
            lines.append(f"  kept: {best['kept']} (and its card)")
    if report.get("plot"):
        lines.append(f"plot: {report['plot']}")
    return "\n".join(lines)


def _spread_text(value: float | None) -> str:
    return "-" if value is None else ("inf" if not np.isfinite(value) else f"{value:.1f}")


def _short(name: str, width: int = 32) -> str:
    """TFLite names carry the Keras scope and fused op names: `functional_1/conv2d_1/Relu;…` -> `conv2d_1/Relu`."""
    name = re.sub(r"^(functional|sequential|model)(_\d+)?/", "", name.split(";")[0])
    return name if len(name) <= width else "…" + name[-(width - 1):]


def plot(report: dict[str, Any], path: Path) -> Path:
    """Per-layer cosine (measured and nncase's) and relative error along the graph, KPU/CPU marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from k210.core.fsutil import atomic_path

    probed = [r for r in report["layers"] if r["probed"]]
    dumped = [r for r in report["layers"] if r["nncase_cosine"] is not None]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot([r["index"] for r in probed], [r["cosine"] for r in probed], "-", color="0.6", zorder=1)
    for where, colour in (("KPU", "tab:orange"), ("CPU", "tab:blue"), ("fused", "tab:green")):
        rows = [r for r in probed if r["runs_on"] == where]
        if rows:
            top.scatter([r["index"] for r in rows], [r["cosine"] for r in rows], color=colour, s=18, zorder=2,
                        label=f"measured ({where})")
    if dumped:
        top.plot([r["index"] for r in dumped], [r["nncase_cosine"] for r in dumped], "x", color="tab:red",
                 label="nncase's dump")
    top.axhline(report["min_cosine"], color="0.3", lw=0.8, ls="--")
    if report["first_bad"]:
        for axis in (top, bottom):
            axis.axvline(report["first_bad"]["index"], color="tab:red", lw=0.8, ls=":")
    top.set_ylabel("cosine vs TFLite")
    top.legend(fontsize=8, loc="best")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.semilogy([r["index"] for r in probed], [max(r["relative_error"], 1e-6) for r in probed], ".-")
    bottom.set_ylabel("relative L2 error")
    bottom.set_xlabel("layer (TFLite op order)")
    top.set_title(f"quantisation error along the graph ({report['baseline']['name']}, "
                  f"{report['agreement_name']} {report['baseline']['agreement']:.3f})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
