"""Issue 26: a lint report leads with what blocks (grouped, in blocking order), its notes are true,
and a downloaded model's sparse weights are densified the way its float16 weights are folded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from k210.converters.densify import count_sparse_weights, dense_values, densify_bytes
from k210.converters.kpu_rules import OpPlacement, Placement
from k210.host.lint.blockers import fallback_groups, problem_groups
from k210.host.lint.render import render_report
from k210.host.lint.report import LintReport


def _mediapipe(relative: str) -> Path:
    spec = importlib.util.find_spec("mediapipe")
    assert spec is not None and spec.submodule_search_locations, \
        "mediapipe is in requirements-data.txt: scripts/bootstrap.sh installs it"
    return Path(spec.submodule_search_locations[0]) / "modules" / relative


def _report() -> LintReport:
    ops = [OpPlacement(i, f"w{i}", "DENSIFY", Placement.UNSUPPORTED, "cannot import DENSIFY") for i in range(5)]
    ops.append(OpPlacement(5, "d2s", "DEPTH_TO_SPACE", Placement.UNSUPPORTED, "cannot import DEPTH_TO_SPACE",
                           "do it on the host"))
    report = LintReport(source="m.tflite", format="tflite", compiler="nncase1.9", quant="uint8", ops=ops)
    memory = "model ~9 MiB exceed the K210's 6 MiB SRAM"
    report.problems = [memory] + [f"{op.name} ({op.op}): {op.reason}" for op in ops] + ["dynamic input"]
    report.estimate_problems = [memory]
    report.fallbacks = [f"c{i} (CONV_2D: 5x5 kernel)" for i in range(4)] + ["big (CONV_2D: 1152 output channels "
                                                                            "> 1024 (KPU limit))"]
    return report


def test_identical_problems_are_one_group_in_blocking_order():
    groups = problem_groups(_report())
    assert [(g.kind, g.what, g.count) for g in groups] == [
        ("unsupported", "DENSIFY", 5), ("unsupported", "DEPTH_TO_SPACE", 1), ("model", "", 1), ("memory", "", 1)]
    assert groups[0].line() == "5 DENSIFY ops (w0, w1, w2, ...): cannot import DENSIFY"
    assert groups[1].line().endswith("; fix: do it on the host")
    fallbacks = fallback_groups(_report())
    assert [(g.what, g.count, g.reason) for g in fallbacks] == [
        ("CONV_2D", 4, "5x5 kernel"), ("CONV_2D", 1, "1152 output channels > 1024 (KPU limit)")]


def test_text_report_puts_the_blockers_under_the_verdict():
    lines = render_report(_report()).splitlines()
    assert lines[0].startswith("verdict: FAIL: 4 problems")  # groups, not 8 raw problem strings
    assert "5 DENSIFY ops" in lines[1] and "DEPTH_TO_SPACE" in lines[2] and "dynamic input" in lines[3]
    assert lines[4] == "  - and 1 more (problems, below)"
    assert lines[5] == "  - then 5 CPU fallbacks of 2 kinds (listed below)"
    assert all(len(line) <= 100 for line in lines[1:6])


def _encode_csr_last_dim(dense: np.ndarray):
    """A TFLite SparsityParameters (dense outer dims, CSR last dim) written independently of densify.py."""
    from types import SimpleNamespace as NS

    rows = dense.reshape(-1, dense.shape[-1])
    segments, indices, values = [0], [], []
    for row in rows:
        (nonzero,) = np.nonzero(row)
        indices += nonzero.tolist()
        values += row[nonzero].tolist()
        segments.append(len(indices))
    levels = [NS(format=0, denseSize=d) for d in dense.shape[:-1]]
    levels.append(NS(format=1, denseSize=0, arraySegments=NS(values=segments), arrayIndices=NS(values=indices)))
    sparsity = NS(traversalOrder=list(range(dense.ndim)), blockMap=None, dimMetadata=levels)
    return sparsity, np.asarray(values, dtype=dense.dtype)


def test_dense_values_decodes_csr_and_blocks():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((3, 2, 5)).astype(np.float16) * (rng.random((3, 2, 5)) > 0.6)
    sparsity, stored = _encode_csr_last_dim(dense)
    assert np.array_equal(dense_values([3, 2, 5], sparsity, stored), dense)
    # A 4x4 matrix in 2x2 blocks (schema.fbs' own example layout): dims (0, 1, block 0, block 1), CSR on
    # the block columns; the stored values are the kept blocks, row-major inside each block.
    from types import SimpleNamespace as NS

    matrix = np.array([[1, 2, 0, 0], [3, 4, 0, 0], [0, 0, 0, 0], [0, 0, 5, 6]], dtype=np.float32)
    csr = NS(format=1, arraySegments=NS(values=[0, 1, 2]), arrayIndices=NS(values=[0, 1]))
    levels = [NS(format=0, denseSize=2), csr, NS(format=0, denseSize=2), NS(format=0, denseSize=2)]
    blocks = NS(traversalOrder=[0, 1, 2, 3], blockMap=[0, 1], dimMetadata=levels)
    stored = np.array([1, 2, 3, 4, 0, 0, 5, 6], dtype=np.float32)
    assert np.array_equal(dense_values([4, 4], blocks, stored), matrix)


def test_pose_detector_densified_computes_the_same():
    """MediaPipe's pose detector ships 38 sparse float16 weights; the folded model gives TFLite's outputs."""
    import tensorflow as tf

    data = _mediapipe("pose_detection/pose_detection.tflite").read_bytes()
    assert count_sparse_weights(data) == 38
    result = densify_bytes(data)
    assert result.folded == 38 and count_sparse_weights(result.data) == 0
    outputs = []
    for blob in (data, result.data):
        interpreter = tf.lite.Interpreter(model_content=blob)
        interpreter.allocate_tensors()
        first = interpreter.get_input_details()[0]
        interpreter.set_tensor(first["index"], np.random.default_rng(1).random(first["shape"], dtype=np.float32))
        interpreter.invoke()
        outputs.append([interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()])
    for before, after in zip(*outputs):
        assert np.array_equal(before, after)


def test_pose_detector_report_leads_with_its_blockers(capsys):
    from k210.host.cli import main

    code = main(["lint", str(_mediapipe("pose_detection/pose_detection.tflite"))])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    head = "\n".join(lines[:5])
    assert "3 DEPTH_TO_SPACE ops" in lines[1] and "exceed the K210's 6 MiB" in lines[2], head
    assert not any("(DENSIFY)" in line or "DENSIFY ops (" in line for line in lines)  # densified, as compile does
    assert "single-output" not in "\n".join(lines)  # two outputs are fine (compile, verify and hil)
    assert any("sparse weights" in line and "38 DENSIFY" in line for line in lines)


@pytest.mark.parametrize("inputs", [1, 2])
def test_only_several_inputs_get_a_note(inputs):
    from k210.converters.tflite_reader import TensorInfo, TFLiteInfo
    from k210.host.lint.model_checks import check_model

    tensor = TensorInfo(index=0, name="x", shape=[1, 4], dtype="float32", is_constant=False, quantized=False)
    info = TFLiteInfo(tensors=[tensor], ops=[], inputs=[tensor] * inputs, outputs=[tensor] * 2, size=0)
    _, notes = check_model(info)
    assert any("2 inputs" in n for n in notes) == (inputs == 2)
    assert not any("single-output" in n for n in notes)


def test_mediapipe_custom_op_gets_advice_for_its_kind():
    from k210.host.lint import lint_path

    report = lint_path(_mediapipe("selfie_segmentation/selfie_segmentation.tflite"))
    blocked = [op for op in report.ops if op.placement is Placement.UNSUPPORTED]
    assert [op.op for op in blocked] == ["CUSTOM:Convolution2DTransposeBias"]
    assert "UpSampling2D" in blocked[0].fix
