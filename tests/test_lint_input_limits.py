"""lint names, per firmware, an input its runner cannot take (issue 21): before any run, with the limit."""

from __future__ import annotations

from k210.converters.kmodel import TensorDesc
from k210.host.lint.firmware import firmware_for, input_notes


def notes_for(version: int, dtype: str, shape: list[int]) -> tuple[list[str], list[dict]]:
    size = 4 if dtype == "float32" else 1
    for d in shape:
        size *= d
    firmware = firmware_for(version)
    return input_notes(firmware, version, [TensorDesc(dtype, shape, size)]), firmware


def test_a_colour_camera_input_of_a_v5_model_is_out_of_reach_of_feat_kpu_only() -> None:
    notes, firmware = notes_for(5, "uint8", [1, 256, 256, 3])
    assert notes == ["CanMV feat/kpu: input of 196608 B: KPU.run takes a grayscale image: one 8-bit channel only"]
    sdk = next(fw for fw in firmware if fw["key"] == "sdk")
    assert "input" not in sdk["note"]  # the C runner takes 512 KiB


def test_limits_by_size_and_dtype() -> None:
    assert notes_for(5, "uint8", [1, 224, 224, 1]) == ([], notes_for(5, "uint8", [1, 224, 224, 1])[1])
    notes, _ = notes_for(5, "uint8", [1, 1024, 1024, 1])
    assert notes[0] == "CanMV feat/kpu: input of 1048576 B: its runner serves inputs up to 123904 B"
    assert notes[1] == "C runner: input of 1048576 B: its runner serves inputs up to 524288 B"
    notes, _ = notes_for(4, "uint8", [1, 28, 28, 1])
    assert notes == ["MaixPy-v1: input of 784 B: its runner takes float32 only (KPU.forward wants floats), not uint8"]
    notes, _ = notes_for(4, "float32", [1, 128, 128, 3])
    assert notes[0] == "MaixPy-v1: input of 196608 B: its runner serves inputs up to 56320 B"
    assert notes[1:] == []  # CanMV main serves 200704 B through its input file


def test_lint_of_a_tflite_names_the_runner_that_cannot_take_its_input() -> None:
    """MediaPipe's hand_recrop (256x256x3, not made here): compiled by default its kmodel takes 196 608 raw
    uint8 bytes, a colour input feat/kpu's KPU.run cannot take; the C runner takes it. With --quant float
    the input is float32 (786 432 B), beyond the C runner's 512 KiB too."""
    import importlib.util
    from pathlib import Path

    from k210.host.lint.tflite_lint import lint_tflite

    spec = importlib.util.find_spec("mediapipe")
    assert spec is not None and spec.submodule_search_locations, "mediapipe is in requirements.txt"
    modules = Path(spec.submodule_search_locations[0]) / "modules"
    data = (modules / "holistic_landmark" / "hand_recrop.tflite").read_bytes()
    notes = [n for n in lint_tflite(data).notes if "input of" in n]
    assert notes == ["CanMV feat/kpu: input of 196608 B: KPU.run takes a grayscale image: one 8-bit channel only"]
    notes = [n for n in lint_tflite(data, quant="float").notes if "input of" in n]
    assert "C runner: input of 786432 B: its runner serves inputs up to 524288 B" in notes
