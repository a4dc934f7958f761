"""MediaPipe's face detector: anchors and box decoding, dequantise + lint, and the uint8 kmodel vs TFLite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from k210.models import face_detector as fd
from k210.models import photos


def _to_input(pixels: np.ndarray) -> np.ndarray:
    from PIL import Image

    square = Image.fromarray(photos.centre_square(pixels)).resize((fd.INPUT_SIZE,) * 2, Image.Resampling.BILINEAR)
    return (np.asarray(square, np.float32) / 127.5 - 1.0)[None]


def _interpret(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    by_name = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    return [by_name[name] for name in fd.OUTPUT_NAMES]


def test_anchor_grid() -> None:
    centres = fd.anchor_centres()
    assert centres.shape == (896, 2)
    # 16x16 cells of stride 8, two anchors each, row by row: the first two share the first cell.
    np.testing.assert_allclose(centres[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(centres[1], centres[0])
    np.testing.assert_allclose(centres[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(centres[2 * 16], [0.5 / 16, 1.5 / 16])  # the second row
    # Then 8x8 cells of stride 16, six anchors each (three layers of two).
    np.testing.assert_allclose(centres[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(centres[-1], [7.5 / 8, 7.5 / 8])


def test_box_decoding_and_iou() -> None:
    raw = np.zeros((1, 896, 16), np.float32)
    raw[0, 512] = [12.8, -6.4, 64, 32] + [0] * 12  # +0.1, -0.05 from the anchor; 0.5 wide, 0.25 high
    box = fd.decode_boxes(raw)[0, 512]
    cx, cy = 0.5 / 8 + 0.1, 0.5 / 8 - 0.05
    np.testing.assert_allclose(box, [cx - 0.25, cy - 0.125, cx + 0.25, cy + 0.125], atol=1e-6)
    assert fd.iou(box, box) == pytest.approx(1.0)
    assert fd.iou([0, 0, 1, 1], [0.5, 0, 1.5, 1]) == pytest.approx(1 / 3)
    assert fd.iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    logits = np.full((1, 896, 1), -500.0, np.float32)  # clipped at -100: no overflow, score ~0
    logits[0, 7] = 3.0
    best, score = fd.best_box(raw, logits)
    assert score[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    np.testing.assert_allclose(best[0], fd.decode_boxes(raw)[0, 7])


def test_photographs_are_there() -> None:
    loaded = {p.name: p for p in photos.load_photos()}
    assert set(photos.FACES) <= set(loaded) and len(loaded) >= 15
    assert all(p.pixels.ndim == 3 and p.pixels.shape[2] == 3 and p.pixels.dtype == np.uint8 for p in loaded.values())


def test_dequantised_face_model_passes_lint_and_finds_the_astronauts_face() -> None:
    from k210.converters.dequantize import dequantize_float16_bytes
    from k210.host.lint import lint_path, lint_tflite

    shipped = fd.tflite_path().read_bytes()
    # Lint judges the model compile will build: the float16 weights folded, and says so.
    as_shipped = lint_path(fd.tflite_path(), compiler="nncase1.9", quant="uint8")
    assert as_shipped.ok, as_shipped.problems
    assert any("float16" in note and "DEQUANTIZE" in note for note in as_shipped.notes)
    folded = dequantize_float16_bytes(shipped)
    assert folded.folded > 0
    report = lint_tflite(folded.data, compiler="nncase1.9", quant="uint8", source="dequantised")
    assert report.ok, report.problems
    assert any(op.placement.value == "kpu" for op in report.ops)

    astronaut = next(p for p in photos.load_photos() if p.name == "astronaut")
    x = _to_input(astronaut.pixels)
    want, got = _interpret(shipped, x), _interpret(folded.data, x)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    box, score = fd.best_box(*got)
    # Her face is around (0.44, 0.25) of the photograph, about a fifth of its width.
    assert score[0] > fd.SCORE_THRESHOLD
    assert box[0][0] < 0.44 < box[0][2] and box[0][1] < 0.25 < box[0][3]
    assert 0.1 < box[0][2] - box[0][0] < 0.35
    brick = next(p for p in photos.load_photos() if p.name == "brick")
    assert fd.best_box(*_interpret(folded.data, _to_input(brick.pixels)))[1][0] < 0.5  # no face in a wall


@pytest.mark.slow
def test_uint8_kmodel_agrees_with_tflite_on_photographs(tmp_path: Path) -> None:
    """Compile (calibrated on crops of photographs without faces) and simulate on the faces."""
    from k210.converters.compile import CompileSpec, compile_tflite
    from k210.converters.dequantize import dequantize_float16_bytes
    from k210.converters.kmodel import parse_kmodel
    from k210.converters.simulate import KModelSimulator

    loaded = photos.load_photos()
    rng = np.random.default_rng(0)
    calibration = []
    for photo in loaded:
        if photo.name not in photos.FACES:
            calibration += [_to_input(crop)[0] for crop in photos.random_square_crops(photo.pixels, 2, rng)]
    to_uint8 = lambda x: np.rint((x + 1.0) * 127.5).astype(np.uint8)  # noqa: E731  [-1, 1] -> pixels
    data = dequantize_float16_bytes(fd.tflite_path().read_bytes()).data
    spec = CompileSpec(quant="uint8", input_type="uint8", input_range=fd.INPUT_RANGE,
                       input_shape=[1, fd.INPUT_SIZE, fd.INPUT_SIZE, 3], calibration=to_uint8(np.stack(calibration)))
    kmodel = compile_tflite(data, spec).kmodel
    info = parse_kmodel(kmodel)
    assert "k210" in [m.type for m in info.modules] and len(info.outputs) == 2
    simulator = KModelSimulator(kmodel)
    for name in photos.FACES:
        x = _to_input(next(p for p in loaded if p.name == name).pixels)
        want = _interpret(data, x)
        got = simulator.run(to_uint8(x))
        got = [np.asarray(g).reshape(w.shape) for g, w in zip(got, want)]
        for w, g in zip(want, got):
            cosine = float(w.ravel() @ g.ravel() / np.linalg.norm(w) / np.linalg.norm(g))
            assert cosine > 0.9, (name, cosine)
        ref_box, _ = fd.best_box(*want)
        km_box, km_score = fd.best_box(*got)
        assert fd.iou(ref_box, km_box)[0] > 0.6, name
        assert km_score[0] > 0.5, name


def test_listed_as_a_pretrained_zoo_entry() -> None:
    from k210.models.zoo import PRETRAINED

    entry = PRETRAINED["face_detection_front"]
    assert Path(entry.path()) == fd.tflite_path()
    assert entry.input_range == fd.INPUT_RANGE and len(entry.outputs) == 2
