"""`k210 compile` settles a memory estimate over the 6 MiB before any calibration data or PTQ build
(issue 28): far beyond the line lint refuses alone; near it nncase decides on random samples."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_dense(tmp_path_factory):
    """A 1024 -> 2048 Dense (on the CPU in float32, as nncase runs a Dense on a flat vector): ~8 MiB of
    weights, beyond the 6 MiB by more than lint's error."""
    import keras

    out = tmp_path_factory.mktemp("big")
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(2048)])
    path = out / "big.keras"
    model.save(path)
    return path


def _no_nncase(*args, **kwargs):
    raise AssertionError("nncase was asked")


def test_far_beyond_the_line_refuses_on_lints_figure_alone(big_dense, tmp_path, cli, monkeypatch):
    import k210.converters.compile as compile_module
    import k210.host.lint.confirm as confirm

    monkeypatch.setattr(confirm, "nncase_figures", _no_nncase)
    monkeypatch.setattr(compile_module, "compile_tflite", _no_nncase)
    # an unreadable calibration folder: the refusal comes before any calibration data is read
    result = cli("compile", big_dense, "--data", tmp_path / "absent", "-o", tmp_path / "big.kmodel")
    assert result.code == 1, result.err
    (line,) = result.err.strip().splitlines()
    assert "lint estimates 8." in line and "beyond the K210's 6.00 MiB" in line and "--no-lint-gate" in line
    assert not list(tmp_path.glob("*.kmodel*"))


def test_near_the_line_nncase_decides_on_random_samples(big_dense, tmp_path, cli, monkeypatch):
    import k210.converters.compile as compile_module
    import k210.host.lint.confirm as confirm

    monkeypatch.setattr(confirm, "LINT_TOTAL_RATIO", (0.89, 2.0))  # as if 8 MiB were within lint's error
    monkeypatch.setattr(compile_module, "compile_tflite", _no_nncase)  # the PTQ build never runs
    result = cli("compile", big_dense, "--data", tmp_path / "absent", "-o", tmp_path / "big.kmodel")
    assert result.code == 1, result.err
    (line,) = result.err.strip().splitlines()
    assert "nncase 1.9's TOTAL is 8." in line and "random calibration" in line
    assert not list(tmp_path.glob("*.kmodel*"))


def test_no_lint_gate_lets_the_full_build_decide(big_dense, tmp_path, cli, monkeypatch):
    import k210.host.lint.confirm as confirm

    monkeypatch.setattr(confirm, "nncase_figures", _no_nncase)
    result = cli("compile", big_dense, "--no-lint-gate", "--dataset", "random", "--calib", "2",
                 "-o", tmp_path / "big.kmodel")
    assert result.code == 1, result.err
    assert "nncase 1.9 compiled it, but its TOTAL 8." in result.err
    assert not list(tmp_path.glob("*.kmodel*"))
