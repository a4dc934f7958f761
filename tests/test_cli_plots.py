"""HIL plots: disagreements shown, every figure named after its model, host-timed latency said so."""

from __future__ import annotations

import numpy as np

from k210.host.hil.plots import _latency, disagreement_matrix, model_title, write_plots


def test_disagreement_matrix_counts_board_against_tf_image_by_image():
    tf = np.array([0, 0, 1, 1, 1, 2])
    board = np.array([0, 1, 1, 1, 2, 2])
    m = disagreement_matrix(tf, board, 3)
    assert m.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert m.sum() - np.trace(m) == 2  # the two images where they differ


def test_model_title_names_the_kmodel_and_its_hash():
    assert model_title({"kmodel": "out/xo.kmodel", "kmodel_sha256": "fa478dffbbe4887791e4"}) == \
        "xo.kmodel (sha256 fa478dffbbe4)"


def test_write_plots_makes_four_pngs(tmp_path, monkeypatch):
    import matplotlib.axes

    titles: list[str] = []
    xlabels: list[str] = []
    real_title, real_xlabel = matplotlib.axes.Axes.set_title, matplotlib.axes.Axes.set_xlabel
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: (titles.append(text), real_title(self, text, *a, **k))[1])
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel",
                        lambda self, text, *a, **k: (xlabels.append(text), real_xlabel(self, text, *a, **k))[1])
    rng = np.random.default_rng(0)
    ref = rng.random((20, 2))
    board = ref.copy()
    board[:3] = board[:3, ::-1]  # three images flipped: the board disagrees with TF on exactly these
    report = {"kmodel": "m.kmodel", "kmodel_sha256": "ab" * 32, "labels": ["O", "X"], "count": 20, "dataset": "xo",
              "confusion": {"board": [[5, 5], [5, 5]], "simulator": [[5, 5], [5, 5]]},
              "latency_us": {"median": 100.0, "p90": 120.0, "max": 150.0, "mean": 101.0}}
    paths = write_plots(tmp_path, report, board, ref, ref, rng.random(20) * 100, host_timed=True)
    assert [p.name for p in paths] == ["confusion.png", "disagreements.png", "errors.png", "latency.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert any(t.startswith("board vs TF: 3 of 20 disagree") for t in titles)
    assert any("m.kmodel (sha256 abababababab)" in t for t in titles)
    assert any("simulator time on the host" in x for x in xlabels)
    xlabels.clear()
    _latency(tmp_path / "real.png", report, rng.random(20) * 100, report["latency_us"], host_timed=False)
    assert xlabels == ["on-board inference time (us)"]
