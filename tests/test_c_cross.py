"""The C core and the K210 glue cross-compile for the K210's CPU (rv64imafc, lp64f) with Debian's
riscv64-unknown-elf-gcc and picolibc; the glue against firmware/c/k210/sdk_api.h."""

from __future__ import annotations

import subprocess
from pathlib import Path

from boardfakes.links import C_DIR, build_c, require_tool

OBJECTS = ["crc32.o", "cobs.o", "wire.o", "sha256.o", "inflate.o", "samplestore.o", "runner.o", "k210_main.o"]


def test_objects_are_riscv64() -> None:
    require_tool("riscv64-unknown-elf-gcc")
    objdump = require_tool("riscv64-unknown-elf-objdump")
    riscv = build_c("cross") / "riscv"
    for name in OBJECTS:
        out = subprocess.run([objdump, "-f", str(riscv / name)], capture_output=True, text=True, check=True).stdout
        assert "file format elf64-littleriscv" in out, out
        assert "architecture: riscv:rv64" in out, out


def test_objects_use_the_single_float_abi() -> None:
    readelf = require_tool("riscv64-unknown-elf-readelf")
    riscv = build_c("cross") / "riscv"
    for name in OBJECTS:
        out = subprocess.run([readelf, "-h", "-A", str(riscv / name)], capture_output=True, text=True,
                             check=True).stdout
        assert "single-float ABI" in out, f"{name}: {out}"
        assert "rv64i2p1_m2p0_a2p1_f2p2_c2p0" in out.replace("_zicsr2p0", "").replace("_zifencei2p0", ""), out


def test_glue_calls_the_sdk_api() -> None:
    nm = require_tool("riscv64-unknown-elf-nm")
    glue = build_c("cross") / "riscv" / "k210_main.o"
    undefined = set(subprocess.run([nm, "-u", str(glue)], capture_output=True, text=True, check=True).stdout.split())
    for symbol in ("fpioa_set_function", "uart_init", "uart_configure", "uart_send_data", "uart_receive_data",
                   "uart_irq_register", "kpu_load_kmodel", "kpu_run_kmodel", "kpu_get_output", "kpu_model_free",
                   "sysctl_clock_get_freq", "w25qxx_read_data", "k210w_runner_feed",
                   # the sample cache in SPI flash: page program, sector erase (which only starts), busy poll
                   "w25qxx_write_data_direct", "w25qxx_sector_erase", "w25qxx_is_busy", "k210s_open"):
        assert symbol in undefined, symbol


def test_cmake_builds_the_host_programs(tmp_path: Path) -> None:
    cmake = require_tool("cmake")
    subprocess.run([cmake, "-S", str(C_DIR), "-B", str(tmp_path), "-DCMAKE_BUILD_TYPE=Release"], check=True,
                   capture_output=True)
    subprocess.run([cmake, "--build", str(tmp_path), "-j2"], check=True, capture_output=True)
    assert (tmp_path / "k210_runner_host").exists() and (tmp_path / "wire_tool").exists()


def test_stack_fits_the_size_the_firmware_sets() -> None:
    """-fstack-usage frames of the core and the K210 glue: no dynamic frames, and even all of them at once
    (an upper bound on any call chain, as nothing recurses) fit K210_STACK_SIZE."""
    riscv = build_c("cross") / "riscv"
    frames: dict[str, int] = {}
    for su in riscv.glob("*.su"):
        for line in su.read_text().splitlines():
            where, size, kind = line.rsplit("\t", 2)
            assert kind.startswith("static") or kind.startswith("bounded"), line
            frames[where] = int(size)
    assert len(frames) > 20, sorted(frames)
    main_c = (C_DIR / "k210" / "main.c").read_text()
    stack = int(main_c.split("#define K210_STACK_SIZE", 1)[1].split()[0].rstrip("u"))
    assert max(frames.values()) <= 1024 and sum(frames.values()) <= stack, (sum(frames.values()), stack)


def test_sdk_build_needs_w25qxx_h_only_for_a_flashed_model(tmp_path: Path) -> None:
    """The standalone SDK ships no w25qxx.h: with the SDK's headers (stand-ins here, all but w25qxx.h) the
    glue's header set resolves unless a flashed boot model asks for the SPI-flash driver."""
    gcc = require_tool("riscv64-unknown-elf-gcc")
    for name in ("dmac", "encoding", "fpioa", "kpu", "plic", "sleep", "sysctl", "uart"):
        (tmp_path / f"{name}.h").write_text("")
    header = C_DIR / "k210" / "sdk_api.h"

    def preprocess(*defines: str) -> subprocess.CompletedProcess:
        return subprocess.run([gcc, "-E", "-DK210_USE_SDK_HEADERS", *defines, "-I", str(tmp_path), str(header)],
                              capture_output=True, text=True)

    assert preprocess().returncode == 0
    assert preprocess("-DK210_FLASH_MODEL_SIZE=0u").returncode == 0
    missing = preprocess("-DK210_FLASH_MODEL_SIZE=0x100000u")
    assert missing.returncode != 0 and "w25qxx.h" in missing.stderr
    assert preprocess("-DK210_CACHE_FLASH_SIZE=0u").returncode == 0
    missing = preprocess("-DK210_CACHE_FLASH_SIZE=0x200000u")  # the sample cache in flash needs the driver too
    assert missing.returncode != 0 and "w25qxx.h" in missing.stderr


def test_cache_region_may_not_overlap_the_firmware_or_the_flashed_model(tmp_path: Path) -> None:
    gcc = require_tool("riscv64-unknown-elf-gcc")

    def compile_glue(*defines: str) -> subprocess.CompletedProcess:
        return subprocess.run([gcc, "-march=rv64imafc", "-mabi=lp64f", "--specs=picolibc.specs", "-c", *defines,
                               "-o", str(tmp_path / "main.o"), str(C_DIR / "k210" / "main.c")],
                              capture_output=True, text=True)

    assert compile_glue("-DK210_FLASH_MODEL_SIZE=0x300000u", "-DK210_FLASH_MODEL_ADDR=0xA00000u",
                        "-DK210_CACHE_FLASH_SIZE=0x200000u").returncode == 0
    overlap = compile_glue("-DK210_FLASH_MODEL_SIZE=0x300000u", "-DK210_FLASH_MODEL_ADDR=0xA00000u",
                           "-DK210_CACHE_FLASH_SIZE=0x200000u", "-DK210_CACHE_FLASH_ADDR=0xC00000u")
    assert overlap.returncode != 0 and "overlaps the flashed model" in overlap.stderr
    firmware = compile_glue("-DK210_CACHE_FLASH_SIZE=0x200000u", "-DK210_CACHE_FLASH_ADDR=0x100000u")
    assert firmware.returncode != 0 and "firmware" in firmware.stderr
