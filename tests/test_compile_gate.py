"""`k210 compile` lints first and refuses in one line with lint's report on stdout; verify refuses data that does
not fit."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _save(model, path):
    model.save(path)
    return path


def test_compile_refuses_an_unsupported_op_with_the_lint_report(tmp_path, cli):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="elu")])
    source = _save(model, tmp_path / "elu.keras")
    result = cli("compile", source, "--quant", "float", "-o", tmp_path / "elu.kmodel")
    assert result.code == 1
    # One line on stderr naming the first problem; lint's whole report on stdout.
    assert len(result.err.splitlines()) == 1 and "not compiling" in result.err and "ELU" in result.err
    assert result.out.startswith("verdict: FAIL") and "ELU" in result.out and "unsupported" in result.out
    assert result.err.startswith("k210 compile: error: lint found")  # lint speaks, not nncase
    assert not list(tmp_path.glob("*.kmodel*"))


def test_compile_no_lint_lets_nncase_refuse(tmp_path, cli):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="elu")])
    source = _save(model, tmp_path / "elu.keras")
    result = cli("compile", source, "--quant", "float", "--no-lint", "-o", tmp_path / "elu.kmodel")
    assert result.code == 2
    assert "nncase refused the model" in result.err and "ELU" in result.err
    assert not list(tmp_path.glob("*.kmodel*"))


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    """A 16x16x3, 10-class model: fits neither the X/O images nor its two classes."""
    import keras

    out = tmp_path_factory.mktemp("rgb")
    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    source = _save(model, out / "rgb.keras")
    from k210.host.cli import main

    assert main(["compile", str(source), "--quant", "float", "-o", str(out / "rgb.kmodel")]) == 0
    return source, out / "rgb.kmodel"


def test_verify_refuses_images_that_do_not_fit_the_model(rgb_model, cli, tmp_path):
    source, kmodel = rgb_model
    result = cli("verify", kmodel, "--reference", source, "--dataset", "xo", "--limit", "8", "--json-out",
                 tmp_path / "v.json")
    assert result.code == 2
    assert "do not fit" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "v.json").exists()


def test_verify_refuses_an_unknown_dataset(rgb_model, cli):
    source, kmodel = rgb_model
    result = cli("verify", kmodel, "--reference", source, "--dataset", "imagenet")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


def test_verify_compares_an_output_that_is_not_the_datasets_classes(tmp_path, cli):
    """10 values against a 2-class set: no longer refused (issue 10); compared, but not classified."""
    import json

    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    source = _save(model, tmp_path / "ten.keras")
    assert cli("compile", source, "--quant", "float", "-o", tmp_path / "ten.kmodel").code == 0
    report = tmp_path / "ten.json"
    result = cli("verify", tmp_path / "ten.kmodel", "--reference", source, "--dataset", "xo", "--limit", "4",
                 "--json-out", report)
    assert result.code == 0, result.err
    (output,) = json.loads(report.read_text())["result"]["outputs"]
    assert "agreement" not in output and "kmodel_accuracy" not in output and output["cosine"] > 0.999
