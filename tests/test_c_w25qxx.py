"""The C runner's SPI-flash driver (issue 21): kendryte-standalone-demo has two w25qxx drivers with
other signatures; CMake names the one the glue needs (face_detect/) and refuses the other
(flash_w25qxx/: init with a rate, read without a mode, no direct write, no sector erase). The glue
reads back what it programmed or erased, since that driver returns W25QXX_OK whatever happened."""

from __future__ import annotations

import subprocess
from pathlib import Path

from boardfakes.links import C_DIR, require_tool

# Declarations as each driver's header has them (signatures only: facts, not the drivers' code).
FACE_DETECT_H = """typedef enum { W25QXX_OK = 0, W25QXX_BUSY, W25QXX_ERROR } w25qxx_status_t;
w25qxx_status_t w25qxx_init(uint8_t spi_index, uint8_t spi_ss);
w25qxx_status_t w25qxx_sector_erase(uint32_t addr);
w25qxx_status_t w25qxx_write_data_direct(uint32_t addr, uint8_t *data_buf, uint32_t length);
"""
FLASH_W25QXX_H = """typedef enum { W25QXX_OK = 0, W25QXX_BUSY, W25QXX_ERROR } w25qxx_status_t;
w25qxx_status_t w25qxx_init(uint8_t spi_index, uint8_t spi_ss, uint32_t rate);
w25qxx_status_t w25qxx_read_data(uint32_t addr, uint8_t *data_buf, uint32_t length);
"""


def configure(tmp_path: Path, header: str) -> subprocess.CompletedProcess:
    cmake = require_tool("cmake")
    sdk = tmp_path / "sdk"
    (sdk / "cmake").mkdir(parents=True)
    (sdk / "cmake" / "common.cmake").write_text("")
    (sdk / "lib" / "nncase" / "v1" / "lib" / "cmake" / "nncaseruntime").mkdir(parents=True)
    driver = tmp_path / "driver"
    driver.mkdir()
    (driver / "w25qxx.h").write_text(header)
    (driver / "w25qxx.c").write_text("")
    return subprocess.run([cmake, "-S", str(C_DIR), "-B", str(tmp_path / "build"), f"-DK210_SDK={sdk}",
                           f"-DK210_W25QXX_DIR={driver}", "-DTOOLCHAIN=/nonexistent"],
                          capture_output=True, text=True, timeout=120)


def test_cmake_refuses_the_flash_w25qxx_driver_and_names_face_detect(tmp_path: Path) -> None:
    run = configure(tmp_path, FLASH_W25QXX_H)
    assert run.returncode != 0
    assert "flash_w25qxx" in run.stderr and "face_detect" in run.stderr


def test_cmake_takes_the_face_detect_driver_past_the_check(tmp_path: Path) -> None:
    run = configure(tmp_path, FACE_DETECT_H)
    assert "flash_w25qxx" not in run.stderr  # whatever the stand-in SDK fails on next, not the driver


def test_glue_reads_back_what_it_programmed_and_erased() -> None:
    main_c = (C_DIR / "k210" / "main.c").read_text()
    program = main_c.split("static int cache_program(", 1)[1].split("\n}\n", 1)[0]
    erase = main_c.split("static int cache_erase(", 1)[1].split("\n}\n", 1)[0]
    assert "return cache_verify(addr, data, n);" in program
    assert "return cache_verify(addr, NULL, K210_FLASH_SECTOR);" in erase
