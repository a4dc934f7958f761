"""The firmwares a kmodel can run under: the one place their facts live.

Every check, choice list and help text about a firmware derives from `FIRMWARES` (lint, compile's
model card, inspect, flash, deploy, hil, board, the board map): one class per firmware, as esptool's
targets/ has one per chip. A firmware is one or more builds (CanMV's main branch and its feat/kpu
branch load different kmodel versions); each build says what its runner serves.

Sources: MaixPy-v1 #423/#434 and components/micropython/port/src/Maix/Maix_kpu.c (error 2002 on v5);
kendryte/canmv main and feat/kpu port/src/Maix/maix_kpu/Maix_kpu.c; the GC heaps are
CONFIG_MAIXPY_GC_HEAP_SIZE in each project's config_defaults.mk; the largest inputs are measured in
MicroPython 1.10 with those heaps (tests/test_micropython_firmwares.py, firmware/README.md "Largest
input per firmware"), the C runner's is K210_MAX_INPUT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KMODEL_VERSIONS = (3, 4, 5)  # the versions any K210 runtime loads
SPIFFS_START = 0xD00000  # MaixPy/CanMV keep their /flash file system in the last 3 MiB of flash
KMODEL_ADDRESS = 0x300000  # where MaixPy/CanMV (and `k210 flash`) put a raw kmodel: firmware stays below
SYSTEM_HEAP_BYTES = 2 * 1024 * 1024  # system heap free on standard MaixPy/CanMV builds (kpu.load mallocs the model)


@dataclass(frozen=True)
class Build:
    """One build of a firmware and what its runner can take."""

    name: str  # short, for messages: "CanMV feat/kpu"
    versions: tuple[int, ...]  # kmodel versions it loads
    max_input: int  # bytes of input its runner serves
    outputs: str  # "all" or "first": which outputs of a multi-output model come back
    input_dtype: str | None = None  # the only input dtype its runner takes (None: any)
    input_channels: int | None = None  # the only channel count (None: any)
    heap_bytes: int | None = None  # MicroPython GC heap (None: no MicroPython)
    input_rule: str = ""  # why dtype/channels are limited, for people


@dataclass(frozen=True)
class Firmware:
    key: str  # --firmware's value
    loader_key: str  # the key in model cards' `loaded_by` and inspect's `loaders` (JSON, kept stable)
    name: str
    builds: tuple[Build, ...]
    repl: bool  # a MicroPython REPL: `k210 deploy` can copy the runner onto it
    compiler: str  # the compiler that makes the kmodel this firmware's usual build loads (lint's default)
    note: str  # one line on what it loads
    version_notes: dict[int, str] = field(default_factory=dict)
    spiffs_start: int | None = None  # its /flash file system (a raw kmodel must end below it)
    virtual: bool = False  # `k210 board` plays it (host/virtualboard)
    virtual_versions: tuple[int, ...] = ()  # what the virtual board runs: nncase 1.9's simulator, v5 only

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted({v for build in self.builds for v in build.versions}))

    def loads(self, version: int) -> bool:
        return version in self.versions

    def build_for(self, version: int) -> Build | None:
        return next((build for build in self.builds if version in build.versions), None)

    def note_for(self, version: int) -> str:
        return self.version_notes.get(version, self.note)

    @property
    def versions_text(self) -> str:
        return "v" + "/v".join(map(str, self.versions))

    @property
    def help(self) -> str:
        """For --firmware's help: `canmv (CanMV-K210, kmodel v3/v4; v5 on feat/kpu)`."""
        return f"{self.key} ({self.short})"

    @property
    def short(self) -> str:
        if len(self.builds) == 1:
            return f"{self.builds[0].name}, kmodel {self.versions_text}"
        parts = [f"{'v' + '/v'.join(map(str, b.versions))} on {b.name}" for b in self.builds]
        return "kmodel " + ", ".join(parts)


MAIXPY = Firmware(
    key="maixpy", loader_key="maixpy", name="Sipeed MaixPy-v1 (import KPU)",
    builds=(Build("MaixPy-v1", (3, 4), 56320, "all", input_dtype="float32", heap_bytes=0x80000,
                  input_rule="its runner takes float32 only (KPU.forward wants floats)"),),
    repl=True, compiler="nncase0.2", spiffs_start=SPIFFS_START, virtual=True, virtual_versions=(),
    note="standard builds load v3/v4; 'minimum' builds v3 only; v5 fails (error 2002/2015)",
    version_notes={
        5: "kmodel v5 is not loadable: error 2002/2015 or a freeze; compile with nncase 0.2 for MaixPy",
        4: "standard builds load v4 (not 'minimum' builds); call kpu.set_outputs() before forward",
    },
)
CANMV = Firmware(
    key="canmv", loader_key="canmv", name="Canaan CanMV-K210 (from maix import KPU)",
    builds=(Build("CanMV main", (3, 4), 200704, "first", heap_bytes=0xBB9B0),
            Build("CanMV feat/kpu", (3, 4, 5), 123904, "all", input_dtype="uint8", input_channels=1, heap_bytes=0xBB9B0,
                  input_rule="KPU.run takes a grayscale image: one 8-bit channel only")),
    repl=True, compiler="nncase1.9", spiffs_start=SPIFFS_START, virtual=True, virtual_versions=(5,),
    note="v3/v4 on the main branch; v5 only on branch feat/kpu (nncase 1.x runtime)",
    version_notes={5: "only the feat/kpu branch (nncase 1.x runtime) loads v5", 4: "the main branch loads v4"},
)
C_RUNNER = Firmware(
    key="c", loader_key="sdk", name="kendryte-standalone-sdk (C, develop)",
    builds=(Build("C runner", (3, 4, 5), 512 * 1024, "all"),),
    repl=False, compiler="nncase1.9",
    note="v5 needs the K210 runtime of the same nncase release that compiled the model",
    version_notes={
        5: "link the K210 runtime of the same nncase release (1.9: runtime-k210.zip into lib/nncase/v1)",
        4: "the develop branch loads v4",
    },
)

FIRMWARES: dict[str, Firmware] = {fw.key: fw for fw in (MAIXPY, CANMV, C_RUNNER)}  # loaders' order in JSON
BY_LOADER_KEY: dict[str, Firmware] = {fw.loader_key: fw for fw in FIRMWARES.values()}
_CHOICE_ORDER = (CANMV, MAIXPY, C_RUNNER)  # --firmware's choices: the default (for v5 and no kmodel) first
KEYS = tuple(fw.key for fw in _CHOICE_ORDER)  # --firmware's choices where any firmware will do
REPL_KEYS = tuple(fw.key for fw in _CHOICE_ORDER if fw.repl)  # deploy's choices
VIRTUAL_KEYS = tuple(fw.key for fw in _CHOICE_ORDER if fw.virtual)  # what `k210 board` plays


def get(key: str) -> Firmware:
    """A firmware by its --firmware key or its loader key (sdk is the C runner)."""
    fw = FIRMWARES.get(key) or BY_LOADER_KEY.get(key)
    if fw is None:
        raise KeyError(key)
    return fw


def loaders(version: int) -> list[Firmware]:
    return [fw for fw in FIRMWARES.values() if fw.loads(version)]


def default_for(version: int | None) -> str:
    """The firmware a kmodel's version calls for when none is named: v3/v4 MaixPy-v1, v5 (or unknown) CanMV."""
    return MAIXPY.key if isinstance(version, int) and MAIXPY.loads(version) else CANMV.key


def cannot_load(key: str, version: int) -> str | None:
    """None when firmware `key` loads kmodel `version`, else why not, with what would, to follow "kmodel NAME is"."""
    fw = get(key)
    if fw.loads(version):
        return None
    others = [other.key for other in _CHOICE_ORDER if other.loads(version)]
    return (f"v{version}, which {fw.name} cannot load (it loads {fw.versions_text}); "
            f"use --firmware {' or '.join(others) or '?'} or compile for this firmware")


def choices_help(keys: tuple[str, ...] | list[str]) -> str:
    """`canmv (...), maixpy (...)` for the keys given, in that order (a key outside the registry, such as
    the virtual board's mlperf-tiny, as it is: its command explains it)."""
    return ", ".join(FIRMWARES[key].help if key in FIRMWARES else key for key in keys)
