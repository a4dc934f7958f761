"""`k210 explain`'s builds at once (issue 28): the same best fix and figures as one build after another.

The model is test_explain_outlier's (one outlier channel wipes 23 narrow ones; equalisation restores
them), so the fixes differ widely: equalisation agrees ~fully, most others lose half the checks, and
those are the fixes the early cut stops once equalisation has finished.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_explain_outlier import build_data, build_model

from k210.host import explain_builds as eb


def test_bound_is_the_mean_with_every_remaining_input_perfect():
    assert eb.bound(0.5, 8, 100) == pytest.approx((8 * 0.5 + 92) / 100)  # 0.96
    assert eb.bound(1.0, 8, 100) == 1.0
    assert eb.bound(0.0, 10, 10) == 0.0


def test_a_bound_below_every_ranking_it_takes_part_in_is_cut():
    race = eb.Race()
    groups = eb.rankings(uint8=True, buildable=True)
    assert race.can_win(groups, (0.0, 0.0))  # nothing finished yet: anything can win
    race.finished(eb.rankings(baseline=True), (0.5, 0.9))
    assert race.can_win(groups, (0.4, 0.9))  # the best-fix ranking is still empty
    race.finished(eb.rankings(uint8=False), (1.0, 1.0))  # the float kmodel: the best fix so far
    assert not race.can_win(groups, (0.4, 0.99))  # below the baseline and below the float kmodel
    assert race.can_win(groups, (0.6, 0.5))  # could still be the best buildable build
    assert not race.can_win(eb.rankings(uint8=False), (0.99, 1.0))
    # equal agreement: the cosine decides, and a tie is no cut (max() keeps the first of equals)
    assert race.can_win(eb.rankings(uint8=False), (1.0, 1.0))
    assert not race.can_win(eb.rankings(uint8=False), (1.0, 0.99))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from k210.converters.preprocess import spec_for_model
    from k210.converters.sources import detect
    from k210.converters.to_tflite import convert_to_tflite
    from k210.host.explaining import ExplainData

    folder = tmp_path_factory.mktemp("parallel")
    tfl = convert_to_tflite(detect(build_model(folder / "outlier.keras")))
    x = np.load(build_data(folder / "colours.npz"))["x"]
    shape = list(tfl.input_shape)
    spec = spec_for_model(shape, dtype="uint8")
    calibration, more, checks = x[:32], x[32:96], x[120:220]
    data = ExplainData(spec.to_kmodel(calibration), spec.to_float(calibration), spec.to_kmodel(checks),
                       spec.to_float(checks), more_calibration=(spec.to_kmodel(more), spec.to_float(more)))
    return tfl.data, shape, data


def run(case, workers: int, cut: bool) -> dict:
    from k210.converters.quant_explain import BuildSpec
    from k210.host.explaining import ExplainOptions, explain

    tflite, shape, data = case
    options = ExplainOptions(spec=BuildSpec(input_type="uint8"), probe_images=8, try_float=False, workers=workers,
                             cut=cut, compile_base=["m.keras"])
    return explain(tflite, shape, data, options)


def same_figures(a: dict, b: dict) -> None:
    keys = ("name", "agreement", "cosine", "kmodel_bytes", "kpu_code", "compile_command")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_parallel_and_cut_choose_what_the_serial_run_chooses(case):
    serial = run(case, workers=1, cut=False)
    assert serial["fixes_cut"] == [] and serial["timing"]["workers"] == 1
    for report in (run(case, workers=3, cut=True), run(case, workers=1, cut=True)):
        same_figures(report["best_fix"], serial["best_fix"])
        same_figures(report["best_build"], serial["best_build"])
        same_figures(report["baseline"], serial["baseline"])
        assert report["best_build"]["agreement"] >= 0.99  # equalisation wins, as in test_explain_outlier
        full = {f["name"]: f for f in serial["fixes"]}
        for fix in report["fixes"]:
            same_figures(fix, full[fix["name"]])
        assert [r.get("cosine") for r in report["layers"]] == [r.get("cosine") for r in serial["layers"]]
        assert report["transforms_applied"] == serial["transforms_applied"]
        for fix in report["fixes_cut"]:  # the bound held: the full build never exceeded it
            assert full[fix["name"]]["agreement"] <= fix["agreement_at_most"] + 1e-9
            assert fix["agreement_at_most"] < report["best_build"]["agreement"]
        assert len(report["fixes"]) + len(report["fixes_cut"]) == len(serial["fixes"])
        timing = report["timing"]
        assert len(timing["builds"]) == len(serial["timing"]["builds"])
        assert timing["build_seconds"] == pytest.approx(sum(b["seconds"] for b in timing["builds"]), abs=0.1)
    # one build at a time, the transforms (the longest) first: the half-agreeing fixes that follow are cut
    assert report["timing"]["workers"] == 1 and report["fixes_cut"], [f["name"] for f in report["fixes"]]


def test_a_build_stops_after_its_first_inputs_when_told(case):
    """The worker runs the first inputs, waits for the parent's word, and runs the rest only on 'go'."""
    from k210.converters import quant_explain as qx

    tflite, shape, data = case
    spec = qx.BuildSpec(input_type="uint8")
    full = qx.build(tflite, spec, input_shape=shape, calibration=data.calibration_kmodel, inputs=data.checks_kmodel)
    seen = []

    def stop(outputs):
        seen.append(outputs)
        return False

    cut = qx.build(tflite, spec, input_shape=shape, calibration=data.calibration_kmodel, inputs=data.checks_kmodel,
                   first=8, decide=stop)
    assert cut.cut and len(cut.outputs[0]) == 8 and len(seen[0][0]) == 8
    np.testing.assert_array_equal(cut.outputs[0], full.outputs[0][:8])
    went = qx.build(tflite, spec, input_shape=shape, calibration=data.calibration_kmodel, inputs=data.checks_kmodel,
                    first=8, decide=lambda outputs: True)
    assert not went.cut and len(went.outputs[0]) == len(data.checks_kmodel)
    np.testing.assert_array_equal(went.outputs[0], full.outputs[0])
    assert full.cpu_seconds > 0 and not full.cut
