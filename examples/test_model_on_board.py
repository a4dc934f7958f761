"""A model check that is a plain pytest test (k210-deploy's pytest plugin gives the fixtures).

    K210_KMODEL=my.kmodel pytest examples/test_model_on_board.py --k210-port /dev/ttyUSB0
    K210_KMODEL=my.kmodel pytest examples/test_model_on_board.py --k210-place 'k210-*'
    K210_KMODEL=my.kmodel pytest examples/test_model_on_board.py --k210-virtual

Without a board option the tests are skipped, saying why. pytest's own reporting applies:
-k selects, --junitxml writes the verdict and each run's figures (k210_* properties).
"""

import os

KMODEL = os.environ.get("K210_KMODEL", "model.kmodel")


def test_the_board_runs_the_k210_deploy_runner(k210_board):
    assert k210_board.hello.max_frame > 0 and 5 in k210_board.hello.kmodel_versions


def test_the_model_on_the_board_computes_what_the_simulator_computes(k210_hil):
    report = k210_hil(KMODEL, dataset="xo", limit=40, no_reference=True)
    assert report.passed, report.text
    assert report.board_vs_simulator["bit_identical"] == 1.0
