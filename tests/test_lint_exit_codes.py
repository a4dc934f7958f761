"""Issue 26: a model that does not fit is exit 1 whoever finds it: lint's estimate, or nncase's own
"Allocator has ran out of memory" when `k210 compile` hands it a model whose only problem was an estimate."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_compile_of_a_model_beyond_the_kpu_ram_exits_1(tmp_path, cli):
    """A 3x3x32 conv over 240x320x3: ~3000 KiB of feature maps for the 2 MiB KPU RAM (nncase refuses it)."""
    import keras

    inp = keras.Input((240, 320, 3), batch_size=1)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
    source = tmp_path / "big.keras"
    keras.Model(inp, keras.layers.Conv2D(8, 1, activation="relu")(x)).save(source)
    lint = cli("lint", source)
    assert lint.code == 1 and "KiB of KPU RAM" in lint.out
    result = cli("compile", source, "--dataset", "random", "--calib", "2", "-o", tmp_path / "big.kmodel")
    assert result.code == 1, result.err
    assert "does not fit" in result.err and "Allocator has ran out of memory" in result.err
    assert not list(tmp_path.glob("*.kmodel*"))
