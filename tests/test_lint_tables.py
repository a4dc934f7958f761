"""The lint tables must be true: every op lint calls importable compiles with nncase 1.9 for k210,
what lint refuses nncase refuses, and lint's KPU placement agrees with the compiled kmodel.

One child process builds all tiny models with TensorFlow; a few child processes compile them
with nncase 1.9 (a fresh one after each nncase error or crash). Slow: ~1-2 minutes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from k210.converters.kmodel import parse_kmodel
from k210.converters.kpu_rules import Placement
from k210.converters.optables import NNCASE19_CUSTOM_CODES, NNCASE19_TFLITE_OPS
from k210.host.lint import lint_tflite

MODELS_SCRIPT = Path(__file__).with_name("test_lint_models.py")
QUANTS = ("float", "uint8")
# Samples of what lint calls unsupported; nncase must refuse every one (the issue names the first four).
REFUSED_REQUIRED = ("refused_ELU", "refused_GELU", "refused_LSTM", "refused_CONV_3D")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("lint_tables")
    built = subprocess.run([sys.executable, str(MODELS_SCRIPT), "build", str(work)], capture_output=True, text=True,
                           timeout=900)
    assert built.returncode == 0, built.stderr[-2000:]
    manifest = json.loads((work / "manifest.json").read_text())
    jobs = [
        {"key": f"{entry['name']}|{quant}", "name": entry["name"], "quant": quant, "file": entry["file"],
         "input_shape": entry["input_shape"], "kmodel": str(work / f"{entry['name']}.{quant}.kmodel")}
        for entry in manifest if "file" in entry for quant in QUANTS
    ]
    results = compile_all(work, jobs)
    return {"manifest": {e["name"]: e for e in manifest}, "jobs": {j["key"]: j for j in jobs}, "results": results}


def compile_all(work: Path, jobs: list[dict]) -> dict[str, dict]:
    """Run the compile child until every job has a result; a crash is the result of the job it was on."""
    jobs_file, results_file = work / "jobs.json", work / "results.jsonl"
    jobs_file.write_text(json.dumps(jobs))
    results_file.touch()
    for _ in range(len(jobs) + 1):
        results, started = _read_results(results_file)
        if len(results) == len(jobs):
            return results
        proc = subprocess.run([sys.executable, str(MODELS_SCRIPT), "compile", str(jobs_file), str(results_file)],
                              cwd=work, capture_output=True, text=True, timeout=900)
        after, started = _read_results(results_file)
        if proc.returncode < 0 and started and started[-1] not in after:
            signal_name = signal.Signals(-proc.returncode).name
            crash = {"key": started[-1], "ok": False, "error": f"nncase crashed ({signal_name})"}
            with results_file.open("a") as log:
                log.write(json.dumps(crash) + "\n")
        elif len(after) == len(results):
            raise AssertionError(f"compile child made no progress (exit {proc.returncode}): {proc.stderr[-2000:]}")
    raise AssertionError("compile jobs did not finish")


def _read_results(path: Path) -> tuple[dict[str, dict], list[str]]:
    results: dict[str, dict] = {}
    started: list[str] = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "ok" in record:
            results[record["key"]] = record
        else:
            started.append(record["key"])
    return results, started


def _report(entry: dict, quant: str):
    return lint_tflite(Path(entry["file"]).read_bytes(), quant=quant, source=entry["name"])


def _has_op(entry: dict, op: str) -> bool:
    return any(o == op or o.startswith(op + ":") for o in entry["ops"])


def test_every_model_was_built_and_contains_its_op(table):
    broken = {name: e["error"] for name, e in table["manifest"].items() if "error" in e}
    assert not broken
    missing = {name: e["ops"] for name, e in table["manifest"].items() if e["op"] and not _has_op(e, e["op"])}
    assert not missing


def test_every_op_lint_calls_importable_has_a_model_that_compiles(table):
    covered = {e["op"] for e in table["manifest"].values() if e["kind"] == "op"}
    assert covered == set(NNCASE19_TFLITE_OPS)
    # CUSTOM is covered by FlexRandomUniform; TFLite_Detection_PostProcess is EXCLUDED (test_lint_models.py).
    assert {"FlexRandomUniform", "TFLite_Detection_PostProcess"} == NNCASE19_CUSTOM_CODES
    failed = {
        e["op"]: table["results"][f"{name}|float"]["error"]
        for name, e in table["manifest"].items()
        if e["kind"] == "op" and not table["results"][f"{name}|float"]["ok"]
    }
    assert not failed, f"ops lint calls importable that nncase 1.9 did not compile: {failed}"


def test_lint_refuses_exactly_what_nncase_refuses(table):
    """For every tiny model and both modes: an `unsupported` op in lint's table <=> nncase fails."""
    mismatches = []
    for key, result in table["results"].items():
        job = table["jobs"][key]
        if table["manifest"][job["name"]]["kind"] == "quantised":
            continue  # a whole-model problem, checked below
        report = _report(table["manifest"][job["name"]], job["quant"])
        refused = [f"{op.op}: {op.reason}" for op in report.ops if op.placement is Placement.UNSUPPORTED]
        if bool(refused) == result["ok"]:
            mismatches.append(f"{key}: nncase {'compiled it' if result['ok'] else 'failed: ' + result['error']}; "
                              f"lint {'refused ' + str(refused) if refused else 'accepted it'}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("name", REFUSED_REQUIRED)
def test_unsupported_samples_are_really_refused_with_lints_message(table, name):
    entry = table["manifest"][name]
    for quant in QUANTS:
        result = table["results"][f"{name}|{quant}"]
        assert not result["ok"]
        blamed = [op for op in _report(entry, quant).ops if op.op == entry["op"]]
        assert blamed and all(op.placement is Placement.UNSUPPORTED for op in blamed)
        quoted = blamed[0].reason.split("'")[1]  # lint quotes nncase's message
        assert result["error"].startswith(quoted.rstrip()), (result["error"], blamed[0].reason)


def test_kpu_placement_agrees_with_the_kmodel_modules(table):
    """With PTQ a `k210` module exists exactly when lint puts some op on the KPU; without PTQ never."""
    mismatches = []
    for key, result in table["results"].items():
        if not result["ok"]:
            continue
        job = table["jobs"][key]
        info = parse_kmodel(Path(job["kmodel"]).read_bytes())
        report = _report(table["manifest"][job["name"]], job["quant"])
        on_kpu = [op.op for op in report.ops if op.placement in (Placement.KPU, Placement.KPU_PARTIAL)]
        if info.has_kpu_code != bool(on_kpu):
            mismatches.append(f"{key}: modules {[m.type for m in info.modules]}, lint on KPU: {on_kpu}")
        if job["quant"] == "float" and info.has_kpu_code:
            mismatches.append(f"{key}: a k210 module without PTQ")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("name,expected", [
    ("placement_conv3x3_relu_maxpool", {"CONV_2D": "kpu", "MAX_POOL_2D": "kpu"}),
    ("placement_conv5x5", {"CONV_2D": "cpu"}),
    ("placement_xo_mlp", {"FULLY_CONNECTED": "kpu-partial", "SOFTMAX": "cpu"}),
])
def test_the_issues_representative_placements(table, name, expected):
    entry = table["manifest"][name]
    for quant in QUANTS:
        info = parse_kmodel(Path(table["jobs"][f"{name}|{quant}"]["kmodel"]).read_bytes())
        placements = {op.op: op.placement.value for op in _report(entry, quant).ops}
        if quant == "uint8":
            assert info.has_kpu_code == (name != "placement_conv5x5")
            assert {op: placements[op] for op in expected} == expected
        else:
            assert not info.has_kpu_code
            assert all(p == "cpu" for p in placements.values())


@pytest.mark.parametrize("name", ["quantised_INT8_CONV", "quantised_FLOAT16_CONV"])
def test_the_quantised_tflite_problem_is_real(table, name):
    report = _report(table["manifest"][name], "uint8")
    assert not report.ok and any("TFLite-quantised" in p for p in report.problems)
    assert not any(table["results"][f"{name}|{quant}"]["ok"] for quant in QUANTS)
