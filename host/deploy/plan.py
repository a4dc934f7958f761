"""Which files go onto the board's file system, checked on the host before the board is touched.

The runner is firmware/maixpy/main.py plus the modules of that folder it imports, directly or not
(today k210runner.py and k210wire.py), so a new module there is deployed without a change here.
A config is the runner's optional `k210_config` module (`CONFIG = {...}` overriding main.py's
defaults): a .py file is copied as it is, a JSON object is written out as that module.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from k210.core import firmwares
from k210.core.errors import BadInputError
from k210.core.fsutil import require_file

RUNNER_ENTRY = "main.py"
CONFIG_MODULE = "k210_config.py"
TARGETS = {"flash": "/flash", "sd": "/sd"}
DEPLOY_RUNNERS = firmwares.REPL_KEYS  # firmwares with a MicroPython REPL (k210.core.firmwares)
SPIFFS_BYTES = 3 * 1024 * 1024  # MaixPy's /flash: the last 3 MiB of the SPI flash
BIG_FOR_SPIFFS = 1024 * 1024
# Names on the board: FAT (/sd) and SPIFFS (/flash) both store these bytes as they are, and the raw REPL
# carries them intact; FAT compares names case-insensitively, so duplicates are found case-folded.
PORTABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(?<!\.)")  # FAT drops a trailing dot: "main.py." is main.py


@dataclass(frozen=True)
class DeployFile:
    kind: str  # "runner", "kmodel" or "config"
    local: Path  # where it comes from (for a generated config: the JSON it was made from)
    remote: str  # absolute path on the board
    content: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "local": str(self.local), "remote": self.remote, "size": self.size,
                "sha256": self.sha256}  # fmt: skip


@dataclass
class DeployPlan:
    files: list[DeployFile]
    directory: str
    runner: str
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict:
        return {"directory": self.directory, "firmware": self.runner, "total_bytes": self.total_bytes,
                "files": [f.to_dict() for f in self.files], "warnings": list(self.warnings)}  # fmt: skip

    def describe(self) -> str:
        lines = [f"deploy plan ({self.runner}): {len(self.files)} file(s), {self.total_bytes:,} B to {self.directory}"]
        for f in self.files:
            lines.append(f"  {f.kind:<7} {f.local.name:<24} -> {f.remote}  {f.size:,} B  sha256 {f.sha256[:12]}")
        return "\n".join(lines)


def packaged_runner_dir() -> Path:
    """firmware/maixpy as installed: the k210.firmware package's folder (it may be a namespace package)."""
    import importlib.util

    spec = importlib.util.find_spec("k210.firmware")
    if spec is not None and spec.origin and Path(spec.origin).is_file():
        return Path(spec.origin).parent
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    raise BadInputError("the k210.firmware package (the MaixPy runner) is not installed; pass --runner-dir")


def runner_files(base: Path) -> list[Path]:
    """main.py and, transitively, the modules of `base` it imports (the config module excepted)."""
    entry = base / RUNNER_ENTRY
    if not entry.is_file():
        raise BadInputError(
            f"runner file {RUNNER_ENTRY} is missing from {base}; reinstall k210-deploy or pass --runner-dir"
        )
    found: list[Path] = []
    pending = [entry]
    while pending:
        path = pending.pop(0)
        if path in found:
            continue
        found.append(path)
        for name in sorted(_imported_modules(path)):
            module = base / f"{name}.py"
            if module.is_file() and module.name != CONFIG_MODULE and module not in found:
                pending.append(module)
    return found


def build_deploy_plan(
    *,
    target: str = "flash",
    runner: str = "maixpy",
    runner_dir: Path | None = None,
    include_runner: bool = True,
    kmodel: Path | None = None,
    kmodel_name: str | None = None,
    config: Path | None = None,
    config_name: str | None = None,
) -> DeployPlan:
    if target not in TARGETS:
        raise BadInputError(f"unknown target {target!r}: choose flash or sd")
    if runner not in DEPLOY_RUNNERS:
        raise BadInputError(f"deploy needs a MicroPython firmware: --firmware {' or '.join(DEPLOY_RUNNERS)}, "
                            f"not {runner!r}")
    directory = TARGETS[target]
    files: list[tuple[str, Path, str, bytes]] = []
    warnings: list[str] = []
    if include_runner:
        for path in runner_files(runner_dir or packaged_runner_dir()):
            files.append(("runner", path, path.name, path.read_bytes()))
    kmodel_remote = None
    if kmodel is not None:
        kmodel = require_file(kmodel, "kmodel")
        _check_local_name(kmodel.name, "kmodel")
        data = kmodel.read_bytes()
        _check_kmodel(kmodel.name, data, runner)
        name = kmodel_name or kmodel.name
        if name.lower().endswith(".py"):
            raise BadInputError(f"kmodel name on the board {name!r}: a .py name would be taken for Python "
                                "(main.py and boot.py run at every boot); keep .kmodel")
        kmodel_remote = f"{directory}/{name}"
        files.append(("kmodel", kmodel, name, data))
        if target == "flash" and len(data) > BIG_FOR_SPIFFS:
            warnings.append(
                f"{kmodel.name} is {len(data) / 2**20:.1f} MiB; /flash holds 3 MiB in all: use --target sd "
                f"or write it raw with `k210 flash {kmodel.name} --address 0x300000`"
            )
    card_config = _model_config(kmodel, kmodel_remote) if kmodel is not None else {}
    if config is not None:
        config = require_file(config, "config")
        _check_local_name(config.name, "config")
        content = _config_module(config, card_config, warnings)
        files.append(("config", config, config_name or CONFIG_MODULE, content))
    elif kmodel is not None:
        # No --config: the runner's config comes from the kmodel's header and its model card, so the
        # board loads the model at boot with its version and tensors.
        content = _generated_config(f"{kmodel.name} and its model card", card_config, "the model card")
        files.append(("config", kmodel, config_name or CONFIG_MODULE, content))
        warnings.append(f"no --config: {CONFIG_MODULE} written from {kmodel.name} and its model card")
    if not files:
        raise BadInputError("nothing to deploy: drop --no-runner-files or give a KMODEL or --config")

    for _kind, _path, name, content in files:
        _check_board_name(name)
        if name.endswith(".py"):
            _check_python(name, content)
    folded = [name.casefold() for _, _, name, _ in files]
    duplicates = sorted({name for _, _, name, _ in files if folded.count(name.casefold()) > 1})
    if duplicates:
        raise BadInputError(f"two files would be written to the same name on the board: {', '.join(duplicates)}")
    plan = DeployPlan(
        [DeployFile(kind, path, f"{directory}/{name}", content) for kind, path, name, content in files],
        directory,
        runner,
        warnings,
    )
    if target == "flash" and plan.total_bytes > SPIFFS_BYTES:
        raise BadInputError(f"{plan.total_bytes:,} bytes do not fit in MaixPy's 3 MiB /flash; use --target sd")
    return plan


def _model_config(kmodel: Path, remote: str | None) -> dict:
    """k210_config entries for a deployed kmodel: where it is, its version (MaixPy-v1 needs it to set a
    v4 model's outputs), its tensors as nncase dtype codes, and what its card says (sidecars.board_config)."""
    from k210.converters.kmodel import parse_kmodel
    from k210.firmware import k210wire
    from k210.host.sidecars import board_config, read_card

    data = kmodel.read_bytes()
    codes = {name: code for code, name in k210wire.DTYPE_NAMES.items()}
    config: dict = {"model": remote, "model_size": len(data)}
    try:
        info = parse_kmodel(data)
    except Exception:  # noqa: BLE001 - _check_kmodel already refused what cannot be deployed
        return config
    config["model_version"] = info.version
    for key, descs in (("model_inputs", info.inputs), ("model_outputs", info.outputs)):
        tensors = [(codes[d.dtype], tuple(d.shape)) for d in descs if d.dtype in codes and d.shape]
        if len(tensors) == len(descs):
            config[key] = tensors
    card = read_card(kmodel)
    if card:
        config.update(board_config(card))
    return config


def _config_module(path: Path, card_config: dict, warnings: list[str]) -> bytes:
    """The k210_config module to install: a .py as it is, a JSON object as `CONFIG = {...}`."""
    if path.suffix.lower() == ".py":
        source = path.read_bytes()
        tree = _parse_python(path.name, source)
        if not any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CONFIG" for t in node.targets)
                   for node in tree.body):  # fmt: skip
            raise BadInputError(f"config {path.name} does not assign CONFIG = {{...}}, which the runner reads")
        return source
    try:
        config = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"config {path.name} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise BadInputError(f"config {path.name} must hold a JSON object (the runner's CONFIG overrides)")
    if card_config.get("model") and "model" not in config:
        config["model"] = card_config["model"]  # the kmodel deployed with it is the one to load at boot
        warnings.append(f'config: "model" set to {card_config["model"]}')
    for key, value in card_config.items():
        config.setdefault(key, value)  # version, tensors, card entries the user's JSON does not set
    return _generated_config(path.name, config, f"config {path.name}")


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number the board's config can hold (JSON has no NaN or Infinity)")


def _generated_config(source: str, config: dict, origin: str) -> bytes:
    """`CONFIG = {...}` from JSON values: only literals, written by repr and read back to prove it.

    Nothing from a file name, a model card or the user's JSON reaches the module but through repr/ascii,
    so no name or value can add a line of code that the board would run at every boot."""
    _check_literal(config, origin, "CONFIG")
    literal = repr(config)
    if ast.literal_eval(literal) != config:  # repr of plain literals always reads back; belt and braces
        raise BadInputError(f"{origin}: its values do not print as Python literals")
    return f"# generated by `k210 deploy` from {ascii(source)}\nCONFIG = {literal}\n".encode()


def _check_literal(value: object, origin: str, where: str) -> None:
    """JSON's value kinds only (what json.loads gives), with finite numbers: repr makes each a literal."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadInputError(f"{origin}: {where} is {value}, not a finite number")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_literal(item, origin, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadInputError(f"{origin}: {where} has a key {key!r} that is not a string")
            _check_literal(item, origin, f"{where}[{key!r}]")
        return
    raise BadInputError(f"{origin}: {where} is a {type(value).__name__}, not a JSON value")


def _check_local_name(name: str, what: str) -> None:
    """A local file name goes into the plan and the generated module's comment: no control characters."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadInputError(f"{what} file name {name!r} has control characters; rename the file")


def _check_board_name(name: str) -> None:
    """A name FAT and SPIFFS keep as it is: ASCII letters, digits, _ . + - (no folders, no leading dot)."""
    if not name or "/" in name or name in (".", ".."):
        raise BadInputError(f"bad file name on the board: {name!r} (a plain name, no folders)")
    if not PORTABLE_NAME.fullmatch(name):
        raise BadInputError(f"bad file name on the board: {ascii(name)} (use ASCII letters, digits and _ . + -; "
                            "other characters may be lost on the way or not be kept by FAT/SPIFFS)")


def _imported_modules(path: Path) -> set[str]:
    tree = _parse_python(path.name, path.read_bytes())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _parse_python(name: str, source: bytes) -> ast.Module:
    if b"\0" in source:  # ast.parse raises ValueError on it; MicroPython would not run it either
        raise BadInputError(f"{name} is not Python source: it holds a NUL byte (at offset {source.index(0)})")
    try:
        return ast.parse(source, filename=name)
    except SyntaxError as exc:
        raise BadInputError(f"{name} has a syntax error at line {exc.lineno}: {exc.msg}") from None
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise BadInputError(f"{name} is not Python source the board can parse: {exc}") from None


def _check_python(name: str, source: bytes) -> None:
    """Refuse to install Python the board cannot even parse (main.py would fail at every boot)."""
    _parse_python(name, source)


def _check_kmodel(name: str, data: bytes, runner: str) -> None:
    from k210.converters.kmodel import parse_kmodel

    try:
        info = parse_kmodel(data)
    except BadInputError as exc:
        raise BadInputError(f"kmodel {name}: {exc}") from None
    refusal = firmwares.cannot_load(runner, info.version)
    if refusal:
        raise BadInputError(f"kmodel {name} is {refusal}")
