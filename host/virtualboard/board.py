"""Boot a firmware script on the virtual board, again after every reset.

`VirtualBoard(options).serve_forever()` puts the stand-ins for the MicroPython modules into
sys.modules and runs firmware/maixpy/main.py (unmodified) as `__main__`. machine.reset() and reset
faults raise BoardReboot out of the script; the board then waits its boot time, bytes that arrive
meanwhile are lost, and main.py starts from scratch with a fresh runner: a new boot nonce and no
uploaded model, as after a real reset. The line (and the host's port) stays up throughout.
"""

from __future__ import annotations

import os
import random
import runpy
import shutil
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from k210.core import firmwares
from k210.core.errors import BadInputError

from .clock import make_utime
from .entropy import make_urandom
from .faults import FaultSpec
from .flash import Flash
from .fpioa import FpioaManager, make_fpioa_manager
from .heap import make_gc
from .kpu import ModelCache, make_canmv_maix, make_maixpy_kpu
from .storage import INFLATE_BPS, StorageArea, StorageSpec, make_uzlib
from .transport import open_transport
from .uart import BoardReboot, make_machine
from .wire import Line

FIRMWARES = (*firmwares.VIRTUAL_KEYS, "mlperf-tiny")  # mlperf-tiny: a text runner for benchmarks
WORKDIR_PREFIX = "k210-board-"  # then the owner's pid and a random part
FLASH_MODEL_OFFSET = firmwares.KMODEL_ADDRESS  # where `k210 flash` and MaixPy put a model
CANMV_VERSIONS = firmwares.CANMV.virtual_versions  # what the simulator runs; real CanMV also loads v3/v4


@dataclass
class BoardOptions:
    firmware: str = "canmv"
    kmodel: Path | None = None  # "flashed" at FLASH_MODEL_OFFSET and loaded at boot
    port: str = "pty"
    baud: int = 1_500_000
    faults: FaultSpec = field(default_factory=FaultSpec)
    fault_seed: int = 0
    boot_ms: float = 50.0
    workdir: Path | None = None
    read_buf_len: int | None = None
    max_frame: int | None = None
    storage: StorageSpec = field(default_factory=StorageSpec)  # the SD card the sample cache lives on
    inflate_bps: float = INFLATE_BPS  # uzlib's speed on the board; 0: a firmware without it


def firmware_script(firmware: str) -> Path:
    if firmware == "mlperf-tiny":
        return Path(__file__).resolve().parent / "mlperf_dut.py"
    from k210 import firmware as package

    return Path(package.__file__).resolve().parent / "main.py"


class VirtualBoard:
    def __init__(self, options: BoardOptions, log=None) -> None:
        if options.firmware not in FIRMWARES:
            raise BadInputError(f"--firmware must be one of {', '.join(FIRMWARES)}")
        if options.faults.closes and not options.port.startswith("socket://"):
            raise BadInputError("--faults close_at needs a socket board (--port socket://127.0.0.1:0): a "
                                "pseudo-terminal would come back under another name")
        self.options = options
        self.log = log or (lambda text: print(f"k210 board: {text}", file=sys.stderr, flush=True))
        self._own_workdir = options.workdir is None
        if self._own_workdir:
            remove_orphaned_workdirs()
        # The owner's pid in the name: a board killed with -9 leaves its directory, the next one removes it.
        self.workdir = Path(options.workdir or tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        for sub in ("sd", "flash"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.flash = Flash()
        self.boot_model: dict | None = None
        if options.kmodel is not None:
            try:
                self.boot_model = self._flash_model(Path(options.kmodel))
            except BaseException:
                self.remove_workdir()
                raise
        self.models = ModelCache()
        self.storage = (StorageArea(options.storage, self.workdir / "sd" / "k210cache")
                        if options.storage.size else None)  # kept across reboots, like a card
        self.board_id = random.getrandbits(32)
        self.boots = 0
        self.fpioa = FpioaManager()
        self.uart = None
        try:
            self.line = Line(open_transport(options.port), options.baud, options.faults, options.fault_seed)
        except BaseException:
            self.remove_workdir()
            raise

    @property
    def boot_seconds(self) -> float:
        """How long a boot after a reset takes (the faults' boot_ms, if given, else --boot-ms)."""
        spec = self.options.faults
        return (spec.boot_ms if spec.boot_ms >= 0 else self.options.boot_ms) / 1000.0

    @property
    def url(self) -> str:
        return self.line.transport.url

    def _flash_model(self, path: Path) -> dict:
        from k210.converters.kmodel import parse_kmodel
        from k210.firmware import k210wire as w

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadInputError(f"cannot read kmodel {path}: {exc.strerror}") from None
        self.flash.write(FLASH_MODEL_OFFSET, data)
        codes = {name: code for code, name in w.DTYPE_NAMES.items()}
        try:
            info = parse_kmodel(data)
            inputs = [(codes[d.dtype], tuple(d.shape)) for d in info.inputs if d.dtype in codes and d.shape]
            outputs = [(codes[d.dtype], tuple(d.shape)) for d in info.outputs if d.dtype in codes and d.shape]
        except Exception:  # the firmware finds out at boot, as a real one would
            inputs, outputs = [], []
        # main.py needs the version of a flash-offset model from its config (k210 deploy writes it)
        return {"model": FLASH_MODEL_OFFSET, "model_size": len(data), "model_version": w.kmodel_version(data[:8]),
                "model_inputs": inputs, "model_outputs": outputs}

    def config(self) -> dict:
        """The board's k210_config.CONFIG: its storage mapped into the work directory."""
        config: dict = {
            "baud": self.options.baud,
            "upload_path": str(self.workdir / "sd" / "k210_upload.kmodel"),
            "input_path": str(self.workdir / "sd" / "k210_input.bin"),
            "boot_counter_path": str(self.workdir / "flash" / "k210_boots"),
            "canmv_kmodel_versions": CANMV_VERSIONS,
        }
        if self.boot_model:
            config.update(self.boot_model)
        if self.options.read_buf_len:
            config["read_buf_len"] = self.options.read_buf_len
        if self.options.max_frame:
            config["max_frame"] = self.options.max_frame
        config["sample_cache_bytes"] = self.options.storage.size if self.storage else 0
        config["sample_volume"] = self.storage
        config["inflate"] = self.options.inflate_bps > 0
        return config

    def _install_modules(self) -> None:
        self.fpioa = FpioaManager()
        canmv = self.options.firmware in ("canmv", "mlperf-tiny")
        modules = {
            "machine": make_machine(self),
            "fpioa_manager": make_fpioa_manager(self.fpioa),
            "utime": make_utime(),
            "gc": make_gc(),
            "urandom": make_urandom(),
            "k210_config": types.SimpleNamespace(CONFIG=self.config()),
            "maix": make_canmv_maix(self, CANMV_VERSIONS) if canmv else None,  # None: ImportError
            "KPU": None if canmv else make_maixpy_kpu(self),
            "uzlib": make_uzlib(self.options.inflate_bps),
        }
        sys.modules.update(modules)

    def serve_forever(self) -> int:
        script = firmware_script(self.options.firmware)
        sys.path.insert(0, str(script.parent))  # the board imports k210wire/k210runner flat
        try:
            while True:
                self.boots += 1
                self._install_modules()
                try:
                    runpy.run_path(str(script), run_name="__main__")
                except BoardReboot as reboot:
                    self.log(f"reset ({reboot.why}), booting again")
                    time.sleep(self.boot_seconds)
                    continue
                except Exception:
                    traceback.print_exc()
                    self.log(f"{script.name} crashed; a real board would now sit in its REPL")
                    return 1
                return 0
        finally:
            self.close()

    def close(self) -> None:
        line = getattr(self, "line", None)
        if line is not None:
            line.close()
        self.remove_workdir()

    def remove_workdir(self) -> None:
        """Also from another thread while the firmware may still write a file there: try again until gone."""
        if not self._own_workdir:
            return
        for _ in range(20):
            shutil.rmtree(self.workdir, ignore_errors=True)
            if not self.workdir.exists():
                return
            time.sleep(0.01)


def remove_orphaned_workdirs(parent: str | None = None) -> list[Path]:
    """Remove the work directories of virtual boards whose process is gone (killed with -9); which ones."""
    from k210.core.lifeline import pid_alive

    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = path.name[len(WORKDIR_PREFIX):].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def exit_with_parent(cleanup: Callable[[], None] | None = None) -> None:
    """Exit when stdin closes: a harness that started this board died or let go of it. os._exit skips
    finally blocks and atexit, so what must not be left behind goes in `cleanup`."""
    import threading

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        if cleanup is not None:
            cleanup()
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
