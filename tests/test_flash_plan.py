"""Flash plan validation, the .kfpkg kflash reads, and USB port auto-detection."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from flashdeploy_support import firmware_bin, kmodel_v4, kmodel_v5, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k210.core.errors import BadInputError
from k210.host.flash.kfpkg import FLASH_LIST, flash_list_json, write_kfpkg
from k210.host.flash.layout import FLASH_SIZE, firmware_flash_image, read_firmware_image, sectors_spanned
from k210.host.flash.plan import build_plan, parse_address
from k210.host.flash.ports import choose_port, k210_candidates


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "firmware": write(tmp_path / "maixpy.bin", firmware_bin(200_000)),
        "v4": write(tmp_path / "m4.kmodel", kmodel_v4(30_000)),
        "v4b": write(tmp_path / "other" / "m4.kmodel", kmodel_v4(20_000, seed=9)),
        "v5": write(tmp_path / "m5.kmodel", kmodel_v5(40_000)),
        "text": write(tmp_path / "notes.kmodel", b"this is not a kmodel at all, just text" * 10),
        "elf": write(tmp_path / "app.elf", b"\x7fELF" + bytes(100)),
    }


# ---- plan ---------------------------------------------------------------------------------------
def test_a_good_plan(files):
    plan = build_plan(files["firmware"], [(files["v4"], 0x500000), (files["v4b"], 0x300000)], "maixpy")
    placed = [(item.kind, item.address) for item in plan.items]
    assert placed == [("firmware", 0), ("kmodel", 0x300000), ("kmodel", 0x500000)]
    firmware = plan.items[0]
    assert firmware.sha256_prefix and firmware.footprint == 200_000 + 37
    assert not plan.items[1].sha256_prefix and plan.items[1].kmodel_version == 4
    # Same file name from two folders: both keep a distinct name inside the .kfpkg.
    assert [item.package_name for item in plan.items] == ["maixpy.bin", "m4-2.kmodel", "m4.kmodel"]
    assert plan.warnings == []
    assert json.loads(json.dumps(plan.to_dict()))["items"][1]["address_hex"] == "0x300000"


def test_v5_kmodel_is_refused_for_maixpy_and_accepted_for_c(files):
    refusal = r"m5.kmodel is v5, which Sipeed MaixPy-v1.*cannot load.*--firmware canmv or c"
    with pytest.raises(BadInputError, match=refusal):
        build_plan(None, [(files["v5"], 0x300000)], "maixpy")
    assert build_plan(None, [(files["v5"], 0x300000)], "c").items[0].kmodel_modules == ("stackvm",)
    canmv = build_plan(None, [(files["v5"], 0x300000)], "canmv")
    assert any("feat/kpu" in warning for warning in canmv.warnings)


def test_not_a_kmodel(files):
    with pytest.raises(BadInputError, match="kmodel notes.kmodel: not a kmodel"):
        build_plan(None, [(files["text"], 0x300000)], "c")


def test_every_problem_is_reported_on_one_line(files):
    with pytest.raises(BadInputError) as caught:
        build_plan(
            files["elf"],
            [(files["v4"], 0x300800), (files["v4b"], 0xFFF000), (files["text"], 0x400000)],
            "maixpy",
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "ELF file" in message
    assert "0x300800 is not on a 4 KiB sector boundary (try 0x300000 or 0x301000)" in message
    assert "past the end of the 16 MiB flash" in message
    assert "not a kmodel" in message


def test_overlaps(files):
    with pytest.raises(BadInputError, match=r"kmodel m4.kmodel .* overlap; move m4.kmodel to 0x310000"):
        build_plan(None, [(files["v4"], 0x300000), (files["v4b"], 0x307000)], "maixpy")
    big_firmware = write(files["firmware"].parent / "big.bin", bytes(0x300000))
    with pytest.raises(BadInputError, match="firmware big.bin .* overlap"):
        build_plan(big_firmware, [(files["v4"], 0x300000)], "maixpy")  # 37 header bytes spill into 0x300000
    with pytest.raises(BadInputError, match="boot header"):
        build_plan(None, [(files["v4"], 0)], "c")


def test_sharing_a_sector_is_an_overlap_but_adjacent_sectors_are_fine(files):
    # m4.kmodel is 30 000 bytes: 0x300000-0x307530 touches sectors 0x300..0x307.
    with pytest.raises(BadInputError, match="overlap"):
        build_plan(None, [(files["v4"], 0x300000), (files["v4b"], 0x307000)], "c")
    plan = build_plan(None, [(files["v4"], 0x300000), (files["v4b"], 0x308000)], "c")
    assert any("share the 64 KiB block at 0x300000" in warning for warning in plan.warnings)
    assert any("0x308000 is not on a 64 KiB boundary" in warning for warning in plan.warnings)


def test_spiffs_and_low_address_warnings(files):
    plan = build_plan(None, [(files["v4"], 0xD00000)], "maixpy")
    assert any("SPIFFS" in warning for warning in plan.warnings)
    assert not build_plan(None, [(files["v4"], 0xD00000)], "c").warnings
    plan = build_plan(None, [(files["v4"], 0x200000)], "maixpy")
    assert any("below 0x300000" in warning for warning in plan.warnings)
    assert not build_plan(files["firmware"], [(files["v4"], 0x200000)], "maixpy").warnings


def test_nothing_to_flash_and_missing_files(files):
    with pytest.raises(BadInputError, match="nothing to flash"):
        build_plan(None, [], "maixpy")
    with pytest.raises(BadInputError, match="kmodel not found"):
        build_plan(None, [(Path("/nonexistent/m.kmodel"), 0x300000)], "maixpy")
    with pytest.raises(BadInputError, match="unknown firmware"):
        build_plan(None, [(files["v4"], 0x300000)], "micropython")


@pytest.mark.parametrize(("text", "value"), [("0x300000", 0x300000), ("3145728", 3145728), ("0xD0_0000", 0xD00000)])
def test_parse_address(text, value):
    assert parse_address(text) == value


@pytest.mark.parametrize("text", ["", "3M", "-0x1000", "0xZZ"])
def test_parse_address_rejects(text):
    with pytest.raises(BadInputError):
        parse_address(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(addresses=st.lists(st.integers(0, FLASH_SIZE // 0x1000).map(lambda s: s * 0x1000), min_size=1, max_size=3))
def test_any_accepted_plan_is_disjoint_and_inside_flash(files, addresses):
    kmodels = [(files[name], address) for name, address in zip(("v4", "v4b", "v5"), addresses)]
    try:
        plan = build_plan(files["firmware"], kmodels, "c")
    except BadInputError:
        return
    seen: set[int] = set()
    for item in plan.items:
        assert item.address % 0x1000 == 0 and item.end <= FLASH_SIZE
        sectors = set(sectors_spanned(item.address, item.footprint))
        assert not sectors & seen
        seen |= sectors


# ---- firmware image and .kfpkg ----------------------------------------------------------------
def test_firmware_image_round_trip():
    image = firmware_flash_image(b"hello", "dio")
    assert image[:5] == b"\x02\x05\x00\x00\x00" and len(image) == 5 + 5 + 32
    assert read_firmware_image(image + b"\xff" * 64) == (0x02, b"hello")
    assert read_firmware_image(image[:-1] + b"\x00") is None


def test_kfpkg_is_what_kflash_expects(files, tmp_path):
    plan = build_plan(files["firmware"], [(files["v4"], 0x300000), (files["v4b"], 0xA00000)], "maixpy")
    package = write_kfpkg(plan, tmp_path / "out" / "all.kfpkg")
    with zipfile.ZipFile(package) as zf:
        text = zf.read(FLASH_LIST).decode()
        members = {name: zf.read(name) for name in zf.namelist()}
    assert text == flash_list_json(plan)
    # kflash 1.1.6 quotes the address with this regex, then int(address, 0): the address has to be an
    # unquoted number on its own line, followed by another key.
    as_kflash_sees_it = json.loads(re.sub(r'"address": (.*),', r'"address": "\1",', text))
    entries = [(int(e["address"], 0), e["bin"], e["sha256Prefix"]) for e in as_kflash_sees_it["files"]]
    assert entries == [(0, "maixpy.bin", True), (0x300000, "m4.kmodel", False), (0xA00000, "m4-2.kmodel", False)]
    assert json.loads(text)["files"][1]["address"] == 0x300000  # and it is still plain JSON
    assert members["maixpy.bin"] == files["firmware"].read_bytes()
    assert members["m4-2.kmodel"] == files["v4b"].read_bytes()


# ---- ports ---------------------------------------------------------------------------------------
def port(device, vid, pid, location=None, serial_number=None):
    return SimpleNamespace(
        device=device, vid=vid, pid=pid, location=location, serial_number=serial_number, description=""
    )


def test_single_ch340_is_chosen_and_others_are_ignored():
    ports = [port("/dev/ttyS0", None, None), port("/dev/ttyACM0", 0x2341, 0x0043), port("/dev/ttyUSB3", 0x1A86, 0x7523)]
    assert choose_port(None, ports) == "/dev/ttyUSB3"
    assert [c.bridge for c in k210_candidates(ports)] == ["CH340"]


def test_ft2232_interfaces_first_for_most_boards_second_for_go():
    ports = [
        port("/dev/ttyUSB1", 0x0403, 0x6010, "1-1.2:1.1", "SIPEED"),
        port("/dev/ttyUSB0", 0x0403, 0x6010, "1-1.2:1.0", "SIPEED"),
    ]
    assert choose_port(None, ports) == "/dev/ttyUSB0"
    assert choose_port("dan", ports) == "/dev/ttyUSB0"
    assert choose_port("goE", ports) == "/dev/ttyUSB1"


def test_no_board_or_several_boards_is_bad_input():
    with pytest.raises(BadInputError, match=r"no K210 board found.*1a86:7523 \(CH340\).*--port"):
        choose_port(None, [port("/dev/ttyS0", None, None)])
    two = [port("/dev/ttyUSB0", 0x1A86, 0x7523, "1-1:1.0"), port("/dev/ttyUSB1", 0x1A86, 0x7523, "1-2:1.0")]
    with pytest.raises(BadInputError, match="several K210-like boards found: /dev/ttyUSB0 .*, /dev/ttyUSB1"):
        choose_port(None, two)
