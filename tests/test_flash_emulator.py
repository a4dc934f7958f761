"""kflash 1.1.6, unmodified, flashing into the K210 ISP emulator: exact bytes, and every way it can go wrong."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import pytest
from flashdeploy_support import firmware_bin, kflash_isp_stub, kmodel_v4, kmodel_v5, write

from k210.core.errors import BadInputError
from k210.host.flash.errors import FlashFailed
from k210.host.flash.isp_emulator import (
    BAD_CHECKSUM,
    BUSY,
    OK,
    ROM_MEMORY_WRITE,
    SRAM_BASE,
    STUB_NOP,
    STUB_WRITE,
    Fault,
    K210IspEmulator,
    emulated_kflash,
)
from k210.host.flash.kflash_driver import run_kflash
from k210.host.flash.kfpkg import write_kfpkg
from k210.host.flash.layout import FLASH_SIZE, firmware_flash_image
from k210.host.flash.plan import build_plan

ISP_STUB = kflash_isp_stub()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "firmware": write(tmp_path / "firmware.bin", firmware_bin(150_000)),
        "v5": write(tmp_path / "digits.kmodel", kmodel_v5(100_000, seed=11)),
        "v4a": write(tmp_path / "a.kmodel", kmodel_v4(90_000, seed=12)),
        "v4b": write(tmp_path / "b.kmodel", kmodel_v4(70_000, seed=13)),
    }


def flash(tmp_path: Path, emulator: K210IspEmulator, firmware, kmodels, runner="c", **options):
    plan = build_plan(firmware, kmodels, runner)
    package = write_kfpkg(plan, tmp_path / "test.kfpkg")
    options.setdefault("board", "dan")
    with emulated_kflash(emulator) as port:
        return run_kflash(package, port=port, **options)


def test_firmware_and_two_kmodels_land_byte_exact(tmp_path, files):
    """The issue's must-show: firmware at 0x0 and two kmodels at two offsets, through real kflash code."""
    emulator = K210IspEmulator(wiring="dan", expected_stub=ISP_STUB)
    kmodel_a, kmodel_b = files["v5"], files["v4a"]
    progress: list[tuple[str, int, int]] = []
    flash(
        tmp_path,
        emulator,
        files["firmware"],
        [(kmodel_a, 0x300000), (kmodel_b, 0x500000)],
        progress=lambda *event: progress.append(event),
    )

    firmware = files["firmware"].read_bytes()
    image = firmware_flash_image(firmware, "dio")
    # kflash's sha256-prefixed layout, re-derived by hand: [0x02 DIO flag][u32 length][data][sha256(all before)]
    assert image[0] == 0x02 and struct.unpack("<I", image[1:5])[0] == len(firmware) and image[5:-32] == firmware
    expected = bytearray(b"\xff") * FLASH_SIZE
    expected[0 : len(image)] = image
    expected[0x300000 : 0x300000 + kmodel_a.stat().st_size] = kmodel_a.read_bytes()
    expected[0x500000 : 0x500000 + kmodel_b.stat().st_size] = kmodel_b.read_bytes()
    assert emulator.flash == expected  # every one of the 16 MiB, not just the written ranges

    assert emulator.sram_at(SRAM_BASE, len(ISP_STUB)) == ISP_STUB  # kflash's stub went in whole
    assert emulator.boots == ["rom", "firmware"] and emulator.booted_firmware == firmware
    assert {w.address % 0x10000 for w in emulator.flash_writes} == {0}  # 64 KiB frames on 64 KiB boundaries
    assert [what for what, _, _ in progress if what != "ISP"][-1] == "a.kmodel"
    finals = {what: (done, total) for what, done, total in progress}
    assert finals == {
        "ISP": (len(ISP_STUB), len(ISP_STUB)),
        "firmware.bin": (len(image), len(image)),
        "digits.kmodel": (100_000, 100_000),
        "a.kmodel": (90_000, 90_000),
    }


def test_qio_mode_clears_the_dio_flag(tmp_path, files):
    emulator = K210IspEmulator()
    flash(tmp_path, emulator, files["firmware"], [], io_mode="qio")
    assert emulator.flash[0] == 0x00
    assert emulator.booted_firmware == files["firmware"].read_bytes()


@pytest.mark.parametrize(
    ("wiring", "board"),
    [
        ("dan", "dan"),
        ("dan", "bit"),
        ("dan", "goD"),
        ("kd233", "kd233"),
        ("kd233", "goE"),
        ("dan", None),
        ("kd233", None),
    ],
)
def test_each_reset_wiring_enters_isp(tmp_path, files, wiring, board):
    emulator = K210IspEmulator(wiring=wiring, expected_stub=ISP_STUB)
    flash(tmp_path, emulator, None, [(files["v4a"], 0x300000)], runner="maixpy", board=board)
    assert emulator.flash_at(0x300000, 90_000) == files["v4a"].read_bytes()


def test_slow_mode_writes_at_115200(tmp_path, files):
    emulator = K210IspEmulator(wiring="kd233")
    flash(tmp_path, emulator, None, [(files["v4b"], 0x600000)], runner="maixpy", board="goE", baud=115200, slow=True)
    assert emulator.baud == 115200
    assert emulator.flash_at(0x600000, 70_000) == files["v4b"].read_bytes()


def test_garbled_and_lost_replies_are_retried(tmp_path, files):
    emulator = K210IspEmulator()
    emulator.faults = [
        Fault(STUB_WRITE, "garble", skip=1, times=2),  # the write happened, its answer is noise
        Fault(STUB_WRITE, "no_reply", skip=1, times=1),  # the write happened, its answer was lost
        Fault(STUB_WRITE, "lose_request", skip=2, times=1),  # the request itself was lost
    ]
    flash(tmp_path, emulator, files["firmware"], [(files["v5"], 0x300000)])
    assert emulator.flash_at(0x300000, 100_000) == files["v5"].read_bytes()
    assert emulator.booted_firmware == files["firmware"].read_bytes()
    assert all(fault.hits == fault.times for fault in emulator.faults)


def test_busy_answers_are_waited_out(tmp_path, files):
    emulator = K210IspEmulator()
    emulator.faults = [Fault(STUB_WRITE, "busy", skip=1, times=4)]
    flash(tmp_path, emulator, None, [(files["v5"], 0x300000)])
    assert emulator.replies(STUB_WRITE).count(BUSY) == 4
    assert emulator.flash_at(0x300000, 100_000) == files["v5"].read_bytes()


def test_checksum_error_on_a_write_fails_the_run(tmp_path, files):
    """kflash 1.1.6 skips a frame the stub rejected with 'bad checksum'; we must not call that a success."""
    emulator = K210IspEmulator()
    emulator.faults = [Fault(STUB_WRITE, "bad_checksum", skip=1, times=1)]
    with pytest.raises(FlashFailed, match="does not resend"):
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)])
    assert BAD_CHECKSUM in emulator.replies(STUB_WRITE)
    # The evidence: the second 64 KiB frame was never rewritten, the rest was.
    assert emulator.flash_at(0x310000, 16) == b"\xff" * 16
    assert emulator.flash_at(0x300000, 0x10000) == files["v5"].read_bytes()[:0x10000]


def test_a_write_the_board_keeps_refusing_fails_with_one_line(tmp_path, files):
    emulator = K210IspEmulator()
    emulator.faults = [Fault(STUB_WRITE, "bad_write", times=None)]
    with pytest.raises(FlashFailed, match="refused a flash write while writing digits.kmodel") as caught:
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)])
    assert "\n" not in str(caught.value)


def test_garbled_reply_while_loading_the_stub_is_a_clear_failure(tmp_path, files):
    emulator = K210IspEmulator(expected_stub=ISP_STUB)
    emulator.faults = [Fault(ROM_MEMORY_WRITE, "garble", skip=3)]
    with pytest.raises(FlashFailed, match="while loading the flash stub"):
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)])
    assert emulator.flash_writes == []


def test_rejected_stub_frame_leaves_a_stub_that_does_not_boot(tmp_path, files):
    """kflash advances the SRAM address before it checks the answer, so a resent 1 KiB frame lands 1 KiB late."""
    emulator = K210IspEmulator(expected_stub=ISP_STUB)
    emulator.faults = [Fault(ROM_MEMORY_WRITE, "bad_checksum", skip=3)]
    with pytest.raises(FlashFailed, match="flash stub did not answer"):
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)])
    assert emulator.stage == "crashed" and emulator.flash_writes == []


@pytest.mark.parametrize("board", ["dan", None])
def test_a_board_that_never_answers_fails_in_bounded_time(tmp_path, files, board):
    emulator = K210IspEmulator(alive=False)
    started = time.monotonic()
    with pytest.raises(FlashFailed, match="did not enter ISP mode"):
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)], board=board)
    assert time.monotonic() - started < 10
    assert emulator.clock.now - 1_000_000 < 120  # kflash's own patience, in emulated seconds


def test_a_board_without_auto_reset_never_enters_isp(tmp_path, files):
    emulator = K210IspEmulator(wiring="none")
    with pytest.raises(FlashFailed, match="hold BOOT while pressing RESET"):
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)])
    assert emulator.boots == []


@pytest.mark.parametrize(
    ("answers_first", "where"), [(0, "starting the flash stub"), (1, "switching the flash stub to the write baud")]
)
def test_stub_that_stops_answering(tmp_path, files, answers_first, where):
    """answers_first=1: the stub answers at 115200 but not after the switch to 1.5 Mbaud (a slow USB bridge)."""
    emulator = K210IspEmulator()
    emulator.faults = [Fault(STUB_NOP, "lose_request", skip=answers_first, times=None)]
    with pytest.raises(FlashFailed, match=f"flash stub did not answer while {where}.*--slow"):
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)])


def test_board_dying_mid_write_is_caught_by_the_watchdog(tmp_path, files):
    """kflash would resend the frame for ever (90 s per try); the watchdog stops it."""
    emulator = K210IspEmulator()
    emulator.faults = [Fault(STUB_WRITE, "die", skip=1)]
    started = time.monotonic()
    with pytest.raises(FlashFailed, match=r"no progress for 0.5 s while writing digits.kmodel \(65,536/100,000"):
        flash(tmp_path, emulator, None, [(files["v5"], 0x300000)], stall_timeout=0.5)
    assert time.monotonic() - started < 8
    assert not any(thread.name == "kflash" and thread.is_alive() for thread in threading.enumerate())


def test_missing_port_is_bad_input(tmp_path, files):
    with pytest.raises(BadInputError, match="cannot open serial port emulated://k210"):
        flash(tmp_path, K210IspEmulator(present=False), None, [(files["v5"], 0x300000)])


def test_kflash_log_hook_is_restored_and_lines_are_kept(tmp_path, files):
    import kflash

    before = kflash.KFlash.print_callback
    lines: list[str] = []
    result = flash(tmp_path, K210IspEmulator(), None, [(files["v5"], 0x300000)], log=lines.append)
    assert kflash.KFlash.print_callback is before
    assert any("Boot to Flashmode Successfully" in line for line in lines)
    assert result.log == lines


def test_emulator_rejects_bad_crc_and_writes_past_the_end():
    """The emulator itself: a corrupted frame and an out-of-range write get the stub's error codes."""
    import binascii

    from k210.host.flash.isp_emulator import BAD_WRITE, STUB_FLASH_INIT, EmulatedSerial

    emulator = K210IspEmulator()
    emulator.stage = "stub"
    port = EmulatedSerial(emulator, "x", baudrate=115200, timeout=0.1)
    emulator.stage = "stub"  # opening asserted RESET; put the chip back in the stub for this unit test

    def request(op: int, address: int, data: bytes, *, corrupt: bool = False) -> bytes:
        body = struct.pack("<II", address, len(data)) + data
        crc = binascii.crc32(body) ^ (1 if corrupt else 0)
        frame = struct.pack("<HHI", op, 0, crc) + body
        port.write(b"\xc0" + frame.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0")
        return port.read(16)

    assert request(STUB_FLASH_INIT, 1, b"") == bytes([0xC0, STUB_FLASH_INIT, OK, 0xC0])
    assert request(STUB_WRITE, 0x1000, b"\xc0\xdb" * 8, corrupt=True) == bytes([0xC0, STUB_WRITE, BAD_CHECKSUM, 0xC0])
    assert request(STUB_WRITE, FLASH_SIZE - 4, b"12345678") == bytes([0xC0, STUB_WRITE, BAD_WRITE, 0xC0])
    assert request(STUB_WRITE, 0x1000, b"\xc0\xdb" * 8) == bytes([0xC0, STUB_WRITE, OK, 0xC0])
    assert emulator.flash_at(0x1000, 16) == b"\xc0\xdb" * 8
    assert emulator.flash_at(0x1010, 0x1000 - 16) == b"\xff" * (0x1000 - 16)


def test_emulator_erase_reports_busy_then_done():
    """0xD8 starts a sector-aligned erase; 0xD9 status answers busy twice, then OK."""
    import binascii

    from k210.host.flash.isp_emulator import STUB_ERASE_NONBLOCKING, STUB_FLASH_INIT, STUB_STATUS, EmulatedSerial

    emulator = K210IspEmulator()
    port = EmulatedSerial(emulator, "x", baudrate=115200, timeout=0.1)
    emulator.stage = "stub"
    emulator.flash[0x2000:0x4000] = b"\x00" * 0x2000

    def request(op: int, address: int = 0, length: int = 0) -> bytes:
        body = struct.pack("<II", address, length)
        port.write(b"\xc0" + struct.pack("<HHI", op, 0, binascii.crc32(body)) + body + b"\xc0")
        return port.read(16)

    def status() -> bytes:
        port.write(b"\xc0" + bytes([STUB_STATUS]) + bytes(12) + b"\xc0")  # as kflash sends it: zeros, no CRC
        return port.read(16)

    assert request(STUB_ERASE_NONBLOCKING, 0x2000, 0x1000) == bytes([0xC0, STUB_ERASE_NONBLOCKING, 0xE4, 0xC0])
    request(STUB_FLASH_INIT, 1)
    assert request(STUB_ERASE_NONBLOCKING, 0x2000, 0x1000) == bytes([0xC0, STUB_ERASE_NONBLOCKING, OK, 0xC0])
    assert [status()[2] for _ in range(3)] == [BUSY, BUSY, OK]
    assert emulator.flash_at(0x2000, 0x1000) == b"\xff" * 0x1000 and emulator.flash_at(0x3000, 4) == bytes(4)
