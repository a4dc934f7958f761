"""`k210 flash` from the command line: dry runs, one-line errors, exit codes, and a run into the emulator."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from flashdeploy_support import firmware_bin, kmodel_v4, kmodel_v5, write

from k210.host.cli import main
from k210.host.flash.isp_emulator import STUB_WRITE, Fault, K210IspEmulator, emulated_kflash
from k210.host.flash.layout import firmware_flash_image


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "firmware": write(tmp_path / "maixpy.bin", firmware_bin(120_000)),
        "a": write(tmp_path / "a.kmodel", kmodel_v4(50_000, seed=1)),
        "b": write(tmp_path / "b.kmodel", kmodel_v4(40_000, seed=2)),
        "v5": write(tmp_path / "v5.kmodel", kmodel_v5(30_000)),
    }


def three_files(files) -> list[str]:
    return [
        "--firmware-bin", str(files["firmware"]),
        str(files["a"]), "--address", "0x300000",
        str(files["b"]), "--address", "0x500000",
    ]  # fmt: skip


def test_dry_run_prints_the_plan_and_touches_nothing(files, capsys, monkeypatch):
    monkeypatch.setattr("serial.Serial", None)  # any attempt to open a port would crash the test
    assert main(["flash", "--dry-run", *three_files(files)]) == 0
    out = capsys.readouterr().out
    assert "0x000000-0x01D4E5  firmware" in out and "0x300000-0x30C350  kmodel v4" in out
    assert "dry run: would flash via auto at 1500000 baud (board auto); nothing was written" in out


def test_dry_run_json_and_saved_kfpkg(files, tmp_path, capsys):
    saved = tmp_path / "keep" / "plan.kfpkg"
    argv = ["flash", "--dry-run", "--json", "--slow", "--save-kfpkg", str(saved), *three_files(files)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["command"] == "flash"
    report = report["result"]
    assert report["dry_run"] is True and report["baud"] == 115200 and report["slow"] is True
    assert [item["address"] for item in report["plan"]["items"]] == [0, 0x300000, 0x500000]
    assert report["plan"]["items"][0]["sha256_prefix"] is True
    with zipfile.ZipFile(saved) as zf:
        assert sorted(zf.namelist()) == ["a.kmodel", "b.kmodel", "flash-list.json", "maixpy.bin"]


def test_default_address_for_a_single_kmodel(files, capsys):
    assert main(["flash", "--dry-run", "--json", str(files["a"])]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["plan"]["items"][0]["address"] == 0x300000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--firmware", "maixpy", "{v5}"], "v5.kmodel is v5, which Sipeed MaixPy-v1"),
        (["{a}", "{b}"], "give --address for"),
        (["{a}", "--address", "0x300100"], "not on a 4 KiB sector boundary"),
        (["{a}", "--address", "banana"], "bad flash address 'banana'"),
        ([], "nothing to flash"),
        (["--firmware-bin", "/no/such/fw.bin"], "firmware not found: /no/such/fw.bin"),
        (["{a}", "--port", "/dev/ttyNOPE42"], "serial port /dev/ttyNOPE42 does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, message):
    argv = [part.format(**{key: str(path) for key, path in files.items()}) for part in argv]
    assert main(["flash", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_address_before_kmodel_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["flash", "--address", "0x300000"])
    assert exc.value.code == 2
    assert "--address must follow the KMODEL it places" in capsys.readouterr().err


def test_no_board_plugged_in(files, capsys, monkeypatch):
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])
    assert main(["flash", str(files["a"])]) == 2
    assert "no K210 board found" in capsys.readouterr().err


def test_flash_into_the_emulator_end_to_end(files, capsys):
    emulator = K210IspEmulator(wiring="kd233")
    with emulated_kflash(emulator) as port:
        assert main(["flash", "--port", port, *three_files(files)]) == 0
    out = capsys.readouterr().out
    assert f"flashed 3 file(s) via {port} at 1500000 baud (board auto)" in out
    image = firmware_flash_image(files["firmware"].read_bytes())
    assert emulator.flash_at(0, len(image)) == image
    assert emulator.flash_at(0x300000, 50_000) == files["a"].read_bytes()
    assert emulator.flash_at(0x500000, 40_000) == files["b"].read_bytes()
    assert emulator.boots[-1] == "firmware"


def test_failed_flash_is_exit_3_with_one_line(files, capsys):
    emulator = K210IspEmulator()
    emulator.faults = [Fault(STUB_WRITE, "bad_checksum")]
    with emulated_kflash(emulator) as port:
        assert main(["flash", "--port", port, "--board", "dan", str(files["a"])]) == 3
    err = capsys.readouterr().err
    assert err.startswith("k210 flash: error: the board reported 1 corrupted write frame(s)")
    assert err.count("\n") == 1


def test_the_target_firmware_follows_the_kmodel(files, capsys):
    """No --firmware: a v5 kmodel is for CanMV, a v4 one for MaixPy-v1; --firmware overrides."""
    for key, expected in (("v5", "canmv"), ("a", "maixpy")):
        assert main(["flash", "--dry-run", "--json", str(files[key])]) == 0
        assert json.loads(capsys.readouterr().out)["result"]["firmware"] == expected
    assert main(["flash", "--dry-run", "--json", "--firmware", "c", str(files["v5"])]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["plan"]["firmware"] == "c"


def test_old_option_names_still_work_with_a_warning(files, capsys):
    assert main(["flash", "--dry-run", "--firmware", str(files["firmware"]), "--runner", "maixpy",
                 str(files["a"])]) == 0
    captured = capsys.readouterr()
    assert "--firmware FILE.bin is now --firmware-bin FILE.bin" in captured.err
    assert "0x000000-0x01D4E5  firmware" in captured.out
