"""Graph transforms of a float TFLite model before nncase: data-free quantisation (Nagel et al., ICCV 2019).

`apply` runs, in this order, cross-layer equalisation, high-bias absorption and empirical bias
correction, each optional, and checks the result against the original in the TFLite interpreter:
equalisation and absorption must leave the float outputs unchanged (relative L2 difference at most
EQUIVALENCE, else a ToolFailure: a transform bug must never reach a kmodel); bias correction changes
the float model on purpose (it cancels the expected weight-quantisation error), so its own change is
reported beside. Output clamping (clamp.py) runs last: it changes the outputs on purpose, only outside the
clamp's range, so the clamped model must equal the original's outputs clipped to that range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from k210.core.errors import BadInputError, ToolFailure

from .clamp import Clamp

# measured ~1e-7..1e-6 (float32 rounding); 1e-4 leaves room for deep graphs. With --relu6-as-relu the check
# runs on the calibration data, which never clipped at the ReLU6s replaced.
EQUIVALENCE = 1e-4
TRANSFORMS = ("equalize", "absorb-bias", "bias-correct")


@dataclass(frozen=True)
class TransformOptions:
    equalize: bool = False
    absorb_bias: bool = False
    bias_correct: bool = False
    relu6_as_relu: bool = False  # a ReLU6 the calibration data never clip becomes a ReLU, so its pair can scale
    sweeps: int = 3
    clamps: tuple[Clamp, ...] = ()  # model outputs whose head layers get a clamp (--clamp-output)

    @property
    def any(self) -> bool:
        return self.equalize or self.absorb_bias or self.bias_correct or bool(self.clamps)

    def names(self) -> list[str]:
        return [n for n, on in zip(TRANSFORMS, (self.equalize, self.absorb_bias, self.bias_correct)) if on] + \
            (["relu6-as-relu"] if self.relu6_as_relu else []) + (["clamp-output"] if self.clamps else [])

    def flags(self) -> list[str]:
        """The `k210 compile` flags that ask for these transforms."""
        clamps = [c.flag() for c in self.clamps]
        if self.equalize and self.absorb_bias and self.bias_correct:
            return ["--dfq"] + (["--relu6-as-relu"] if self.relu6_as_relu else []) + clamps
        dfq = [n for n in self.names() if n not in ("relu6-as-relu", "clamp-output")]
        return [f"--{n}" for n in dfq] + (["--relu6-as-relu"] if self.relu6_as_relu else []) + clamps


@dataclass
class Transformed:
    tflite: bytes
    report: dict


def apply(tflite: bytes, options: TransformOptions, calibration: np.ndarray | None,
          *, check_inputs: np.ndarray | None = None) -> Transformed:
    """`tflite` transformed as `options` ask; `calibration` is float model inputs [N, *input]."""
    from . import graph as g
    from .bias import correct_bias
    from .equalize import EqualizeReport, absorb_high_bias, equalize, relu6_to_relu
    from .measure import outputs, relative_difference

    if not options.any:
        return Transformed(tflite, {"transforms": []})
    if (options.absorb_bias or options.bias_correct or options.relu6_as_relu) and \
            (calibration is None or not len(calibration)):
        raise BadInputError("--absorb-bias, --bias-correct and --relu6-as-relu measure the model on calibration data: "
                            "pass --dataset or --data")
    if options.relu6_as_relu and not options.equalize:
        raise BadInputError("--relu6-as-relu only serves --equalize (or --dfq): add one of them")
    if not (options.equalize or options.absorb_bias or options.bias_correct):  # clamps alone
        return _clamped(tflite, options, {"transforms": options.names(), "pairs": [], "skipped": []},
                        calibration if calibration is not None else check_inputs)
    samples = None if calibration is None else np.asarray(calibration, np.float32)[:32]
    model = g.Model(tflite)
    eq = EqualizeReport()
    relu6 = relu6_to_relu(model, samples) if options.relu6_as_relu else []
    if options.equalize:
        equalize(model, samples, sweeps=options.sweeps, report=eq)
    if options.absorb_bias:
        absorb_high_bias(model, samples, eq)
    probe = samples if samples is not None else check_inputs
    equivalent = model.to_bytes()
    report: dict = {"transforms": options.names(), "basis": eq.basis if options.equalize else None,
                    **({"relu6_as_relu": relu6} if options.relu6_as_relu else {}),
                    "pairs": [p.describe() for p in eq.pairs], "skipped": eq.skipped}
    if probe is not None and (options.equalize or options.absorb_bias):
        before = outputs(tflite, probe)
        difference = relative_difference(before, outputs(equivalent, probe))
        report["float_difference"] = difference
        if not difference <= EQUIVALENCE:
            raise ToolFailure(f"equalisation changed the float model's outputs by {difference:.2e} (relative): "
                              "a transform bug; compile without --equalize/--absorb-bias and report it")
    if options.bias_correct:
        corrected = correct_bias(model, samples)
        report["bias_corrected"] = corrected.layers
        final = model.to_bytes()
        report["bias_correction_float_change"] = relative_difference(outputs(equivalent, samples),
                                                                     outputs(final, samples))
        return _clamped(final, options, report, probe)
    return _clamped(equivalent, options, report, probe)


def _clamped(tflite: bytes, options: TransformOptions, report: dict, probe: np.ndarray | None) -> Transformed:
    """`tflite` with the asked output clamps, checked: its outputs must be the unclamped model's clipped."""
    from .clamp import clamp_outputs, clipped_reference
    from .measure import outputs, relative_difference

    if not options.clamps:
        return Transformed(tflite, report)
    clamped, heads = clamp_outputs(tflite, list(options.clamps))
    report["clamped"] = heads
    if probe is not None and len(probe):
        probe = np.asarray(probe, np.float32)[:32]
        before = outputs(tflite, probe)
        expected = clipped_reference(tflite, list(options.clamps), before)
        difference = relative_difference(expected, outputs(clamped, probe))
        report["clamp_difference"] = difference
        report["clamped_share"] = [float(np.mean(e != b)) for e, b in zip(expected, before)]
        if not difference <= EQUIVALENCE:
            raise ToolFailure(f"output clamping changed the float outputs by {difference:.2e} (relative) inside "
                              "the clamp's range: a transform bug; compile without --clamp-output and report it")
    return Transformed(clamped, report)
