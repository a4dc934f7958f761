"""Which files go onto the board's file system, checked on the host before the board is touched."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from k210.host.errors import BadInputError
from k210.host.fsutil import require_file, sha256_file

RUNNER_FILES = ("main.py", "k210wire.py")  # the MaixPy runner and its protocol module, from k210.firmware
TARGETS = {"flash": "/flash", "sd": "/sd"}
DEPLOY_RUNNERS = ("maixpy", "canmv")  # firmwares with a MicroPython REPL
SPIFFS_BYTES = 3 * 1024 * 1024  # MaixPy's /flash: the last 3 MiB of the SPI flash
BIG_FOR_SPIFFS = 1024 * 1024


@dataclass(frozen=True)
class DeployFile:
    kind: str  # "runner", "kmodel" or "config"
    local: Path
    remote: str  # absolute path on the board
    size: int
    sha256: str

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

    def seconds_at(self, baud: int) -> float:
        """Rough wire time: base64 (4/3) plus Python wrapping, ten bits a byte."""
        return self.total_bytes * 1.4 * 10 / baud

    def to_dict(self) -> dict:
        return {"directory": self.directory, "runner": self.runner, "total_bytes": self.total_bytes,
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
        raise BadInputError(f"deploy needs a MicroPython firmware: --runner maixpy or canmv, not {runner!r}")
    directory = TARGETS[target]
    files: list[tuple[str, Path, str]] = []
    if include_runner:
        base = runner_dir or packaged_runner_dir()
        for name in RUNNER_FILES:
            path = base / name
            if not path.is_file():
                raise BadInputError(
                    f"runner file {name} is missing from {base}; reinstall k210-deploy or pass --runner-dir"
                )
            _check_python(path)
            files.append(("runner", path, name))
    warnings: list[str] = []
    if kmodel is not None:
        kmodel = require_file(kmodel, "kmodel")
        _check_kmodel(kmodel, runner)
        files.append(("kmodel", kmodel, kmodel_name or kmodel.name))
        if target == "flash" and kmodel.stat().st_size > BIG_FOR_SPIFFS:
            warnings.append(
                f"{kmodel.name} is {kmodel.stat().st_size / 2**20:.1f} MiB; /flash holds 3 MiB in all: use --target sd "
                f"or write it raw with `k210 flash --kmodel {kmodel.name} --address 0x300000`"
            )
    if config is not None:
        config = require_file(config, "config")
        if config.suffix.lower() == ".json":
            try:
                json.loads(config.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadInputError(f"config {config.name} is not valid JSON: {exc}") from None
        files.append(("config", config, config_name or config.name))
    if not files:
        raise BadInputError("nothing to deploy: drop --no-runner-files or give --kmodel/--config")

    names = [name for _, _, name in files]
    for name in names:
        if not name or "/" in name or name in (".", ".."):
            raise BadInputError(f"bad file name on the board: {name!r} (a plain name, no folders)")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BadInputError(f"two files would be written to the same name on the board: {', '.join(duplicates)}")
    deploy_files = [
        DeployFile(kind, path, f"{directory}/{name}", path.stat().st_size, sha256_file(path))
        for kind, path, name in files
    ]
    plan = DeployPlan(deploy_files, directory, runner, warnings)
    if target == "flash" and plan.total_bytes > SPIFFS_BYTES:
        raise BadInputError(f"{plan.total_bytes:,} bytes do not fit in MaixPy's 3 MiB /flash; use --target sd")
    return plan


def _check_python(path: Path) -> None:
    """Refuse to install a runner the board cannot even parse (it would fail at every boot)."""
    try:
        compile(path.read_bytes(), str(path), "exec")
    except SyntaxError as exc:
        raise BadInputError(f"runner file {path.name} has a syntax error at line {exc.lineno}: {exc.msg}") from None


def _check_kmodel(path: Path, runner: str) -> None:
    from k210.converters.kmodel import FIRMWARE_LOADERS, parse_kmodel

    try:
        info = parse_kmodel(path.read_bytes())
    except BadInputError as exc:
        raise BadInputError(f"kmodel {path.name}: {exc}") from None
    if not info.loadable_by(runner):
        loader = FIRMWARE_LOADERS[runner]
        raise BadInputError(
            f"kmodel {path.name} is v{info.version}, which {loader['name']} cannot load "
            f"(it loads v{'/v'.join(map(str, loader['versions']))})"
        )
