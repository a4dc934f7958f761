"""pyproject.toml describes the package that is really there: every package folder packaged, every package-data
glob matching files, every third-party import declared (board-side ones in the base dependencies, the rest in
an extra), and requirements.txt, the lock file, pinning each declared distribution inside its range."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tomli
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomli.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PROJECT = PYPROJECT["project"]
# Import name -> the distribution that must be declared for it (directly, or the one that brings it).
DISTRIBUTION = {
    "numpy": "numpy", "serial": "pyserial", "kflash": "kflash", "tqdm": "tqdm", "yaml": "PyYAML", "PIL": "pillow",
    "tensorflow": "tensorflow-cpu", "keras": "tensorflow-cpu", "h5py": "tensorflow-cpu",
    "google": "tensorflow-cpu", "flatbuffers": "tflite", "tflite": "tflite", "nncase": "nncase", "onnx": "onnx",
    "matplotlib": "matplotlib", "labgrid": "labgrid", "grpc": "labgrid", "pytest": "pytest",
}
# host/virtualboard/mlperf_dut.py runs inside the virtual board, whose stand-ins provide these.
BOARD_MODULES = {"machine", "maix", "utime", "fpioa_manager", "k210_config"}
ML_ONLY = {"tensorflow-cpu", "nncase", "tflite", "onnx", "matplotlib"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower()


def _declared() -> dict[str, set[str]]:
    groups = {"base": {_name(r) for r in PROJECT["dependencies"]}}
    groups.update({extra: {_name(r) for r in reqs} for extra, reqs in PROJECT["optional-dependencies"].items()})
    return groups


def test_every_package_folder_is_packaged():
    mapped = SETUPTOOLS["package-dir"]
    folders = {package: ROOT / folder for package, folder in mapped.items()}
    found = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join([package, *parts]))
    assert found <= set(SETUPTOOLS["packages"]), sorted(found - set(SETUPTOOLS["packages"]))
    assert set(SETUPTOOLS["packages"]) <= set(mapped)


def test_package_data_globs_match_files():
    for package, globs in SETUPTOOLS["package-data"].items():
        folder = ROOT / SETUPTOOLS["package-dir"][package]
        for pattern in globs:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches nothing"


def test_every_third_party_import_is_declared():
    declared = set().union(*_declared().values())
    undeclared = {}
    for folder in ("core", "host", "converters", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {n.split(".")[0] for n in names}:
                    if top in sys.stdlib_module_names or top == "k210" or top in BOARD_MODULES:
                        continue
                    if DISTRIBUTION.get(top, top).lower() not in declared:
                        undeclared.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not undeclared


def test_the_board_side_needs_no_ml_package():
    groups = _declared()
    assert not groups["base"] & ML_ONLY
    assert groups["ml"] >= ML_ONLY


def test_the_lock_file_pins_every_declared_distribution_in_its_range():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower().replace("_", "-")] = spec.version
    for requirement in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["ml"]:
        req = Requirement(requirement)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"requirements.txt does not pin {name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"
