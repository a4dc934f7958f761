"""One registry of firmwares (k210.core.firmwares): lint, compile's model card, inspect, flash, deploy, the
virtual board and the board runner (what hil checks HELLO against) agree with it, and with the facts
stated here, for every firmware x kmodel version. Every --firmware lists in its help the choices it takes."""

from __future__ import annotations

import argparse
import json
import re
import struct
import types
from pathlib import Path

import pytest
from flashdeploy_support import kmodel_v4, kmodel_v5, write

from k210.core import firmwares
from k210.host.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = (3, 4, 5)
# The facts (firmware README, MaixPy-v1 #423/#434): MaixPy-v1 cannot load v5 (error 2002); CanMV loads
# v3/v4 on main and v5 on feat/kpu; the Kendryte SDK C runner loads all three.
LOADS = {("maixpy", 3): True, ("maixpy", 4): True, ("maixpy", 5): False,
         ("canmv", 3): True, ("canmv", 4): True, ("canmv", 5): True,
         ("c", 3): True, ("c", 4): True, ("c", 5): True}
CASES = [(key, version) for key in ("maixpy", "canmv", "c") for version in VERSIONS]


def kmodel_v3() -> bytes:
    """nncase 0.1's header: version, flags, arch, 2 layers, max start, main memory, 1 output; then the layers."""
    return struct.pack("<7I", 3, 0, 0, 2, 0, 8192, 1) + struct.pack("<2I", 0, 40) + struct.pack("<4I", 1, 16, 2, 16)


@pytest.fixture(scope="module")
def kmodels(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("kmodels")
    return {3: write(folder / "m3.kmodel", kmodel_v3() + bytes(64)), 4: write(folder / "m4.kmodel", kmodel_v4()),
            5: write(folder / "m5.kmodel", kmodel_v5())}


def test_the_registry_states_the_facts():
    assert {(key, v): firmwares.get(key).loads(v) for key, v in CASES} == LOADS
    assert set(firmwares.KEYS) == {"maixpy", "canmv", "c"} and firmwares.REPL_KEYS == ("canmv", "maixpy")


@pytest.mark.parametrize(("key", "version"), CASES)
def test_lint_flash_deploy_and_inspect_agree(key, version, kmodels, capsys):
    path = str(kmodels[version])
    loads = LOADS[key, version]
    assert main(["lint", path, "--firmware", key, "--json"]) == (0 if loads else 1)
    lint = json.loads(capsys.readouterr().out)["result"]
    assert any("cannot load" in p for p in lint["problems"]) == (not loads)
    assert main(["flash", path, "--firmware", key, "--dry-run"]) == (0 if loads else 2)
    capsys.readouterr()
    if key in firmwares.REPL_KEYS:
        assert main(["deploy", "--dry-run", path, "--firmware", key]) == (0 if loads else 2)
    else:  # no REPL: deploy does not offer it
        with pytest.raises(SystemExit) as exc:
            main(["deploy", "--dry-run", path, "--firmware", key])
        assert exc.value.code == 2
    capsys.readouterr()
    assert main(["inspect", path, "--json"]) == 0
    loaders = json.loads(capsys.readouterr().out)["result"]["loaders"]
    assert loaders[firmwares.get(key).loader_key]["loads"] == loads


@pytest.mark.parametrize("version", VERSIONS)
def test_compile_cards_name_the_loaders(version, kmodels):
    from k210.converters.kmodel import parse_kmodel

    # compile and explain write info.loaders into the model card's `loaded_by` (loader keys: sdk is c)
    loaded_by = parse_kmodel(kmodels[version].read_bytes()).loaders
    expected = [firmwares.get(key).loader_key for key in ("maixpy", "canmv", "c") if LOADS[key, version]]
    assert loaded_by == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_the_virtual_board_refuses_what_the_firmware_refuses(version, kmodels):
    from k210.host.virtualboard.board import CANMV_VERSIONS
    from k210.host.virtualboard.kpu import make_canmv_maix, make_maixpy_kpu

    board = types.SimpleNamespace(flash=None, models=types.SimpleNamespace(load=lambda data: "loaded"))
    path = str(kmodels[version])
    with pytest.raises((ValueError, OSError)) as exc:  # v3/v4 have no host runtime: a different refusal
        make_maixpy_kpu(board).load(path)
    assert ("error:2002" in str(exc.value)) == (not LOADS["maixpy", version])
    kpu = make_canmv_maix(board, CANMV_VERSIONS).KPU()
    if version in CANMV_VERSIONS:
        kpu.load_kmodel(path)
    else:
        with pytest.raises(OSError):
            kpu.load_kmodel(path)
    assert set(CANMV_VERSIONS) <= {v for v in VERSIONS if LOADS["canmv", v]}


def test_the_board_runner_says_in_hello_what_the_registry_says():
    """hil refuses a kmodel whose version is not in HELLO's kmodel_versions: firmware/maixpy/main.py's backends."""
    source = (ROOT / "firmware/maixpy/main.py").read_text()
    maixpy = re.search(r"class MaixPyV1Backend:.*?kmodel_versions = (\([\d, ]+\))", source, re.S)
    canmv_main = re.search(r"CanMVBackend\(.*?versions or (\([\d, ]+\))", source)
    feat_kpu = re.search(r"CanMVKPUBackend\(.*?versions or (\([\d, ]+\))", source)
    got = {name: eval(m.group(1)) for name, m in  # noqa: S307 - tuples of ints read from our own source
           (("MaixPy-v1", maixpy), ("CanMV main", canmv_main), ("CanMV feat/kpu", feat_kpu))}
    builds = {b.name: b.versions for fw in firmwares.FIRMWARES.values() for b in fw.builds}
    assert got == {name: builds[name] for name in got}


def test_the_board_fakes_use_the_registry_heaps():
    from boardfakes.micropython import FIRMWARE_HEAP

    builds = {"maixpy-v1": firmwares.MAIXPY.build_for(4), "canmv": firmwares.CANMV.build_for(4),
              "canmv-kpu": firmwares.CANMV.build_for(5)}
    assert {profile: build.heap_bytes for profile, build in builds.items()} == FIRMWARE_HEAP


def _firmware_options(parser: argparse.ArgumentParser, name: str = "k210"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _firmware_options(sub, sub_name)
        elif "--firmware" in action.option_strings:
            yield name, action


def test_every_firmware_option_lists_what_it_takes():
    found = dict(_firmware_options(build_parser()))
    assert {"lint", "flash", "deploy", "hil", "board"} <= set(found)
    for command, action in found.items():
        choices = tuple(action.choices or re.findall(r"\w[\w-]*", action.metavar))
        for key in firmwares.KEYS:
            assert (f"{key} (" in action.help) == (key in choices), (command, key, action.help)
    assert "c" not in found["hil"].choices and "c" not in found["deploy"].choices


def test_lint_says_which_build_returns_output_0_only():
    """CanMV main's run_with_output hands back output 0 (kpu_get_output(ctx, 0)); the others every output."""
    from flashdeploy_support import filler

    from k210.host.lint.kmodel_lint import lint_kmodel

    header = struct.pack("<4s9I", b"LDMK", 4, 0, 0, 0, 65536, 3, 1, 2, 0)  # v4: 1 input, 2 outputs
    ranges = (struct.pack("<4I", 1, 1, 0, 784) + struct.pack("<4i", 1, 1, 28, 28)
              + struct.pack("<4I", 1, 0, 784, 8) + struct.pack("<4I", 1, 0, 792, 40))
    report = lint_kmodel(header + ranges + filler(30_000, 4))
    assert [n for n in report.notes if "output 0 only" in n] == ["CanMV main: returns output 0 only of this model's 2"]
