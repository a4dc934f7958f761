"""Every `k210` command's `--json` is one envelope that validates against host/envelope.schema.json, and its
`result` against the command's own schema, host/schemas/COMMAND.result.schema.json.

The commands come from the parser itself, so a command added later fails here until it has a case
below (and an --json option): the contract cannot be forgotten.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import jsonschema
import pytest

from k210.host.cli import build_parser
from k210.host.envelope import SCHEMA_PATH, result_schema_path


def _subcommands() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices)


COMMANDS = _subcommands()
SCHEMA = json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """One small trained X/O model and what the commands make of it, shared by every case."""
    from k210.host.cli import main

    d = tmp_path_factory.mktemp("envelope")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # train's own --json case: the costliest command, run once
        assert main(["train", "xo", "--epochs", "1", "--limit", "300", "-o", str(d), "--json"]) == 0
    _validate(out.getvalue(), "train", 0)
    paths = {"dir": d, "keras": d / "xo_mlp.keras", "tflite": d / "xo.tflite", "kmodel": d / "xo.kmodel",
             "pb": d / "xo.pb"}
    assert main(["convert", str(paths["keras"]), "-o", str(paths["tflite"])]) == 0
    assert main(["compile", str(paths["tflite"]), "--dataset", "xo", "--calib", "16", "-o", str(paths["kmodel"])]) == 0
    return paths


# command -> (argv after the command, expected exit code); {name} is a path from `art`.
CASES: dict[str, list[tuple[list[str], int]]] = {
    "train": [(["resnet152"], 2)],  # train's exit-0 envelope is validated in the `art` fixture
    "freeze": [(["{keras}", "-o", "{pb}"], 0)],
    "convert": [(["{keras}", "-o", "{dir}/c.tflite"], 0), (["{kmodel}"], 2)],
    "compile": [(["{tflite}", "--quant", "float", "-o", "{dir}/f.kmodel"], 0)],
    "inspect": [(["{kmodel}"], 0), (["{dir}/missing.kmodel"], 2)],
    "verify": [(["{kmodel}", "--reference", "{keras}", "--dataset", "xo", "--limit", "16"], 0)],
    "explain": [(["{tflite}", "--dataset", "xo", "--calib", "16", "--limit", "16", "--no-fixes", "--probes", "4",
                  "--probe-images", "2", "--min-agreement", "0"], 0)],
    "lint": [(["{tflite}"], 0), (["{tflite}", "--quant", "float", "--strict"], 1)],
    "hil": [(["{kmodel}", "--virtual", "--upload", "--dataset", "xo", "--limit", "16", "--no-reference"], 0)],
    "flash": [(["{kmodel}", "--dry-run"], 0), (["{kmodel}", "--firmware", "maixpy",
                                                          "--dry-run"], 2)],
    "deploy": [(["{kmodel}", "--dry-run"], 0)],
    "completion": [(["bash"], 0), (["zsh"], 0)],
}
SERVERS = {"board": ["{kmodel}"]}  # serve until stopped: the envelope is their first line


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_valid_result_schema(command):
    path = result_schema_path(command)
    assert path.is_file(), f"k210 {command}: write {path.relative_to(path.parents[2])} (docs/cli.md)"
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["required"], f"{path.name}: name the keys a script may rely on"


def test_every_command_has_json_and_a_case_here():
    missing = sorted(set(COMMANDS) - set(CASES) - set(SERVERS))
    assert not missing, f"add a --json case to tests/test_json_schema.py for: k210 {', '.join(missing)}"
    no_json = sorted(name for name, sub in COMMANDS.items()
                     if not any("--json" in a.option_strings for a in sub._actions))
    assert not no_json, f"commands without --json: {no_json}"


def _validate(text: str, command: str, code: int) -> dict:
    envelope = json.loads(text)
    jsonschema.validate(envelope, SCHEMA)
    assert envelope["command"] == command and envelope["exit_code"] == code
    assert envelope["passed"] is (code == 0)
    if code in (0, 1):  # it ran to its end: its figures are in the shape docs/cli.md promises
        jsonschema.validate(envelope["result"], json.loads(result_schema_path(command).read_text()))
    return envelope


@pytest.mark.parametrize(("command", "case"), [(c, i) for c in CASES for i in range(len(CASES[c]))])
def test_json_envelope_validates(command, case, art, cli):
    argv, expected = CASES[command][case]
    if command not in COMMANDS:
        pytest.fail(f"k210 {command} is gone: drop its case")
    argv = [a.format(**{k: str(v) for k, v in art.items()}) for a in argv]
    result = cli(command, *argv, "--json")
    assert result.code == expected, result.err[-2000:]
    envelope = _validate(result.out, command, expected)
    if expected == 0:
        assert envelope["result"] and envelope["error"] is None
        assert all(i["sha256"] for i in envelope["inputs"] if i["role"] in ("model", "kmodel", "reference"))
    else:
        assert envelope["error"] or expected == 1


@pytest.mark.parametrize("command", sorted(SERVERS))
def test_server_commands_print_the_envelope_first(command, art):
    argv = [a.format(**{k: str(v) for k, v in art.items()}) for a in SERVERS[command]]
    proc = subprocess.Popen([sys.executable, "-m", "k210.host.cli", command, *argv, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    envelope = _validate(line, command, 0)
    assert envelope["result"]["url"]


def test_the_envelope_names_the_tools_without_importing_tensorflow():
    code = ("import sys; from k210.host.envelope import tool_versions; v = tool_versions(); "
            "print(v['tensorflow'] is not None, v['nncase'] is not None, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False"]


def test_json_out_writes_the_envelope_beside_the_text_and_nothing_on_bad_input(cli, tmp_path):
    ok = tmp_path / "ok.json"
    result = cli("completion", "bash", "--json-out", ok)
    assert result.code == 0 and result.out.startswith("#") and not result.out.lstrip().startswith("{")
    envelope = _validate(ok.read_text(), "completion", 0)
    assert envelope["result"]["script"].rstrip("\n") == result.out.rstrip("\n")
    failed = tmp_path / "failed.json"
    result = cli("inspect", tmp_path / "missing.kmodel", "--json-out", failed)
    assert result.code == 2 and result.out == "" and len(result.err.strip().splitlines()) == 1
    assert not failed.exists()  # a bad input leaves no file behind (the --json envelope on stdout says why)
    result = cli("inspect", tmp_path / "missing.kmodel", "--json-out", tmp_path / "report.txt")
    assert result.code == 2 and "--json-out: expected a FILE.json" in result.err
