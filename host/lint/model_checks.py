"""Whole-model checks on a TFLite graph: shapes the K210 can take, and TFLite-side quantisation."""

from __future__ import annotations

from k210.converters.kpu_rules import QUANTISATION_OPS
from k210.converters.tflite_reader import TFLiteInfo

QUANTISED_FIX = (
    "convert the float model (no tf.lite.Optimize.DEFAULT, no representative_dataset) and let nncase quantise "
    "it: --quant uint8; holding only this downloaded .tflite, fetch the float32 or float16 release of the same "
    "model (k210 compile folds float16 and sparse weights itself)"
)


def check_model(info: TFLiteInfo) -> tuple[list[str], list[str]]:
    """(problems, notes) about the graph as a whole."""
    problems: list[str] = []
    notes: list[str] = []
    if not info.ops:
        problems.append("the TFLite graph has no ops")
    if len(info.inputs) > 1:
        # Several outputs are fine (compile, verify and hil compare each one); several inputs are not.
        notes.append(f"{len(info.inputs)} inputs: k210 compile and the board runners take single-input models "
                     "(any number of outputs)")
    for tensor in info.inputs:
        shape = tensor.signature if tensor.signature is not None else tensor.shape
        if not shape:
            continue
        if any(d < 0 for d in shape[1:]):
            problems.append(
                f"input '{tensor.name}' has dynamic dimensions {shape}: the K210 needs fixed shapes; convert with a "
                "fixed input shape"
            )
        if shape[0] < 0:
            notes.append(f"input '{tensor.name}' has a dynamic batch {shape}: nncase sees batch 1 (the converter "
                         "fixes it to 1)")
        elif shape[0] > 1:
            notes.append(f"input '{tensor.name}' has batch {shape[0]}: board runners feed one image at a time; "
                         "convert with batch 1")
    if _weight_only_int8(info):
        notes.append(
            "int8 weights in a float model (weight-only / dynamic-range quantisation, as MLPerf Tiny's "
            "kws_ref_model_float32.tflite): nncase 1.9 imports it as a float model and compiles it (measured)"
        )
        return problems, notes
    quantised = _quantisation_evidence(info)
    if quantised:
        problems.append(
            f"TFLite-quantised model ({', '.join(quantised)}): nncase wants a float model and quantises it itself; on "
            "quantised TFLite graphs nncase 1.9 crashed (int8 conv, float16 weights) or refused ('Type must be "
            f"same') here. Fix: {QUANTISED_FIX}"
        )
    return problems, notes


def _weight_only_int8(info: TFLiteInfo) -> bool:
    """Only constant weights are int8; every activation, input and output stays float32 and no
    QUANTIZE/DEQUANTIZE op exists: TFLite's hybrid kernels, which nncase imports as float ops."""
    if any(op.opcode in QUANTISATION_OPS for op in info.ops):
        return False
    weights = {t.dtype for t in info.tensors if t.is_constant and t.quantized}
    activations = {t.dtype for t in info.tensors if not t.is_constant and t.dtype not in ("int32", "int64")}
    return weights == {"int8"} and activations == {"float32"}


def _quantisation_evidence(info: TFLiteInfo) -> list[str]:
    evidence = []
    ops = sorted({op.opcode for op in info.ops if op.opcode in QUANTISATION_OPS})
    if ops:
        evidence.append("/".join(ops) + " ops")
    io_types = sorted({t.dtype for t in [*info.inputs, *info.outputs] if t.dtype in ("int8", "uint8", "int16")})
    if io_types:
        evidence.append(f"{'/'.join(io_types)} inputs or outputs")
    weight_types = sorted({
        t.dtype for t in info.tensors if t.is_constant and (t.quantized or t.dtype == "float16")
    })
    if weight_types:
        evidence.append(f"{'/'.join(weight_types)} weights")
    return evidence
