"""Hostile files (issue 22, and issue 23 item 5): each reproduction of the security review, refused with one
line and exit 2, or made harmless; never code run, a crash, memory blown up or a file clobbered."""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from flashdeploy_support import firmware_bin, kmodel_v4, write

from k210.core.errors import BadInputError
from k210.host.deploy.plan import build_deploy_plan
from k210.host.flash.bootimage import boot_image_problem, sdk_image
from k210.host.flash.plan import build_plan
from k210.models.course_pickle import load_course_pickle, safe_loads
from k210.models.idx import encode_idx, parse_idx

REPO = Path(__file__).resolve().parents[1]


def _one_line(result, code: int = 2) -> str:
    assert result.code == code, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runner"
    write(folder / "main.py", b"import k210runner\nk210runner.serve()\n")
    write(folder / "k210runner.py", b"def serve():\n    pass\n")
    return folder


# -- 1. nothing from a name, a card or the user's JSON becomes code on the board ------------------------------


def test_a_kmodel_name_with_a_line_of_code_is_refused(tmp_path, runner_dir, cli):
    evil = "x\nimport uos;open('/flash/PWNED','w').write('owned')\n#.kmodel"
    kmodel = write(tmp_path / evil, kmodel_v4())
    line = _one_line(cli("deploy", "--dry-run", "--runner-dir", runner_dir, kmodel, "--kmodel-name",
                         "m.kmodel"))
    assert "control characters" in line


def test_generated_config_is_one_literal_whatever_the_json_holds(tmp_path, runner_dir):
    payload = "x'}\nimport uos\nuos.remove('/flash/main.py')\n#"
    config = write(tmp_path / "c.json", json.dumps({"labels": [payload], payload: {"n": 1}}).encode())
    plan = build_deploy_plan(runner_dir=runner_dir, kmodel=write(tmp_path / "m.kmodel", kmodel_v4()), config=config)
    source = plan.files[-1].content.decode()
    tree = ast.parse(source)
    # One statement, CONFIG = <literal>, and the literal reads back as the very values given.
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign) and tree.body[0].targets[0].id == "CONFIG"
    values = ast.literal_eval(tree.body[0].value)
    assert values["labels"] == [payload] and values[payload] == {"n": 1}
    assert "import" not in "".join(line for line in source.splitlines() if not line.startswith(("#", "CONFIG")))


def test_a_model_card_value_cannot_be_a_name_the_board_would_look_up(tmp_path, runner_dir):
    kmodel = write(tmp_path / "m.kmodel", kmodel_v4())
    card = {"preprocessing": {"spec": {"height": 28, "width": 28, "channels": 1, "dtype": "uint8",
                                       "input_range": [0.0, float("nan")]}}}
    (tmp_path / "m.kmodel.json").write_text(json.dumps(card))  # json.dumps writes NaN; json.loads reads it
    with pytest.raises(BadInputError) as caught:
        build_deploy_plan(runner_dir=runner_dir, kmodel=kmodel)
    assert "nan" in str(caught.value).lower() and "\n" not in str(caught.value)


# -- issue 23 item 5: deploy inputs that crashed with exit 3 ---------------------------------------------------


@pytest.mark.parametrize("name", ["main.py", "boot.py", "Main.PY"])
def test_a_kmodel_named_like_a_boot_script_is_bad_input(tmp_path, runner_dir, cli, name):
    kmodel = write(tmp_path / "m.kmodel", kmodel_v4())
    line = _one_line(cli("deploy", "--dry-run", "--runner-dir", runner_dir, kmodel, "--kmodel-name", name))
    assert ".py name would be taken for Python" in line


def test_a_python_config_with_a_nul_byte_is_bad_input(tmp_path, runner_dir, cli):
    config = write(tmp_path / "settings.py", b"CONFIG = {'baud': 115200}\n\x00\n")
    line = _one_line(cli("deploy", "--dry-run", "--runner-dir", runner_dir, "--config", config))
    assert "settings.py is not Python source: it holds a NUL byte" in line


@pytest.mark.parametrize("text", ['{"baud": NaN}', '{"x": Infinity}', '{"baud": NaN, "x": Infinity}',
                                  '{"y": -Infinity}'])
def test_json_config_with_nan_or_infinity_is_bad_input(tmp_path, runner_dir, cli, text):
    config = write(tmp_path / "c.json", text.encode())
    line = _one_line(cli("deploy", "--dry-run", "--runner-dir", runner_dir, "--config", config))
    assert "is not valid JSON" in line and ("NaN" in line or "Infinity" in line)


# -- 8. names on the board: portable to FAT/SPIFFS, duplicates found case-folded -------------------------------


@pytest.mark.parametrize("name", ["mainé.kmodel", "m odel.kmodel", "m\tx.kmodel", ".hidden.kmodel", "a:b.kmodel",
                                  "m.kmodel."])
def test_names_that_fat_or_spiffs_would_not_keep_are_refused(tmp_path, runner_dir, cli, name):
    kmodel = write(tmp_path / "m.kmodel", kmodel_v4())
    line = _one_line(cli("deploy", "--dry-run", "--runner-dir", runner_dir, kmodel, "--kmodel-name", name))
    assert "bad file name on the board" in line or "control characters" in line


def test_duplicates_are_found_case_folded(tmp_path, runner_dir):
    config = write(tmp_path / "c.json", b"{}")
    with pytest.raises(BadInputError, match="same name on the board: K210runner.py"):
        build_deploy_plan(runner_dir=runner_dir, config=config, config_name="K210runner.py", target="sd")


# -- 4. the "safe" unpickler: no dtype BUILD, numbers only, no allocation the file does not hold --------------


def _course(arrays: dict) -> bytes:
    return pickle.dumps(arrays, protocol=2)


def _hidden_object_dtype_pickle() -> bytes:
    """An array whose dtype's BUILD makes a structured type with an object field and the object flag hidden."""
    state = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0)
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=2)

    class Dtype:  # pickles as numpy.dtype('V8', False, True) with that state
        def __reduce__(self):
            return (np.dtype, ("V8", False, True), state)

    class Array:
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct

            return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), Dtype(), False, b"\x41" * 8))

    p.dump({"train_images": Array()})
    return buf.getvalue()


def test_a_dtype_build_that_hides_an_object_field_is_refused_in_a_child_that_survives(tmp_path):
    path = write(tmp_path / "evil.bin", _hidden_object_dtype_pickle())
    # In a child process: were the array built, indexing it would crash the interpreter (rc 139).
    code = ("import sys\nfrom k210.models.course_pickle import load_course_pickle\nfrom k210.core.errors import "
            "BadInputError\ntry:\n    a = load_course_pickle(sys.argv[1])\n    print(a['train_images'][0])\n"
            "except BadInputError as e:\n    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          cwd=REPO.parent)
    assert done.returncode == 0 and done.stdout.startswith("refused:"), (done.returncode, done.stdout, done.stderr)
    assert "V8" in done.stdout or "dtype" in done.stdout


@pytest.mark.parametrize("bad", [np.array([1, "a"], dtype=object), np.zeros(2, dtype=[("a", "u1"), ("b", "f4")]),
                                 np.array(["ab"]), np.zeros((2, 2), dtype=complex)])
def test_every_array_is_numbers_checked_inside_the_loader(tmp_path, bad):
    good = np.zeros((2, 28, 28), np.uint8)
    content = {"train_images": good, "train_labels": np.zeros(2, np.int64), "test_images": good, "test_labels": bad}
    with pytest.raises(BadInputError, match="refusing|not a numeric"):
        load_course_pickle(write(tmp_path / "x.bin", _course(content)))


def test_a_33_byte_pickle_cannot_allocate_300_mb():
    data = b"\x80\x02c__builtin__\nbytearray\nJ\x00\xa3\xe1\x11\x85R."  # bytearray(300_000_000)
    assert len(data) <= 40
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadInputError, match="bytearray"):
        safe_loads(data)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing like 300 MB


def test_an_empty_reconstruct_is_the_only_one_allowed():
    big = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\xa3\xe1\x11\x85C\x01b\x87R."
    with pytest.raises(BadInputError, match="empty ndarray"):
        safe_loads(big)


def test_real_pickles_still_load_big_endian_included(tmp_path):
    arrays = {"train_images": np.arange(12, dtype=">u2").reshape(3, 4), "train_labels": np.array([1, 0, 1]),
              "test_images": np.zeros((1, 2), np.float32), "test_labels": np.array([True])}
    for protocol in (2, 4, 5):
        data = pickle.dumps(arrays, protocol=protocol)
        loaded, plain = load_course_pickle(write(tmp_path / f"p{protocol}.bin", data)), pickle.loads(data)
        for key, value in arrays.items():  # the dtypes pickle itself gives (numpy swaps some to native order)
            assert loaded[key].dtype == plain[key].dtype and np.array_equal(loaded[key], value)


# -- 5. crash dumps: a private folder, new files only ------------------------------------------------------------


def _crash(cli, monkeypatch):
    def boom(args):
        raise ZeroDivisionError("x")

    monkeypatch.setattr("k210.host.commands.inspect.run", boom)
    return cli("inspect", "whatever.kmodel")


def test_crash_dumps_go_to_a_private_folder_and_never_through_a_planted_link(cli, monkeypatch, tmp_path):
    import tempfile
    import types

    from k210.host import cli as cli_module

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("K210_CRASH_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)
    folder = tmp_path / f"k210-deploy-crashes-{os.getuid()}"
    line = _one_line(_crash(cli, monkeypatch), 3)
    assert str(folder) in line and (os.lstat(folder).st_mode & 0o777) == 0o700
    # Another user plants a link at the name the next crash will use (its time and pid are predictable).
    monkeypatch.setattr(cli_module, "time", types.SimpleNamespace(strftime=lambda fmt: "20260101-000000"))
    victim = write(tmp_path / "victim.txt", b"precious")
    os.symlink(victim, folder / f"inspect-20260101-000000-{os.getpid()}.txt")
    line = _one_line(_crash(cli, monkeypatch), 3)
    assert victim.read_bytes() == b"precious"
    assert line.rstrip().endswith(f"inspect-20260101-000000-{os.getpid()}-1.txt")


def test_a_crash_folder_that_is_a_link_or_not_private_is_not_used(cli, monkeypatch, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "link")
    monkeypatch.setenv("K210_CRASH_DIR", str(tmp_path / "link"))
    assert "could not be saved" in _one_line(_crash(cli, monkeypatch), 3) and not list(elsewhere.iterdir())
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    monkeypatch.setenv("K210_CRASH_DIR", str(shared))
    assert "could not be saved" in _one_line(_crash(cli, monkeypatch), 3) and not list(shared.iterdir())
    mine = tmp_path / "mine"
    monkeypatch.setenv("K210_CRASH_DIR", str(mine))
    assert str(mine) in _one_line(_crash(cli, monkeypatch), 3)
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 4242)  # the folder is now another user's
    assert "could not be saved" in _one_line(_crash(cli, monkeypatch), 3)


# -- 6. decompression bombs -------------------------------------------------------------------------------------


def test_a_194_kb_gzip_idx_that_inflates_to_200_mb_is_refused_quickly():
    bomb = gzip.compress(encode_idx(np.zeros((2, 28, 28), np.uint8)) + bytes(200_000_000), 9)
    assert len(bomb) < 250_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(BadInputError, match="more than the 1,584 bytes its IDX header declares"):
        parse_idx(bomb, "bomb.gz")
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_a_header_that_declares_too_much_is_refused_before_inflating():
    head = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 100_000, 1000, 1000)  # 100 GB declared
    with pytest.raises(BadInputError, match="declares 100,000,000,016 bytes"):
        parse_idx(gzip.compress(head + bytes(1000)), "big.gz")
    ok = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    assert np.array_equal(parse_idx(gzip.compress(encode_idx(ok))), ok)


def test_the_emnist_zip_path_caps_what_it_inflates(tmp_path, monkeypatch):
    from k210.models import emnist

    monkeypatch.setattr(emnist, "MAX_IDX_BYTES", 10_000)
    archive = tmp_path / "gzip.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for stem in emnist.LETTER_FILES.values():
            zf.writestr(f"gzip/{stem}.gz", bytes(50_000))  # a member that inflates past the cap
    with pytest.raises(BadInputError, match="more than the 10,000 bytes this reads"):
        emnist._read_archive(archive)


# -- 7. any file is not a firmware --------------------------------------------------------------------------------


def test_only_a_k210_boot_image_is_flashed_at_0x0(tmp_path, cli):
    v3 = write(tmp_path / "m3.kmodel", struct.pack("<II", 3, 0) + bytes(1000))
    pkl = write(tmp_path / "x.bin", pickle.dumps({"a": list(range(100))}, protocol=4))
    zeros = write(tmp_path / "zeros.bin", bytes(4096))
    for path in (v3, pkl, zeros):
        line = _one_line(cli("flash", "--dry-run", "--firmware-bin", path))
        assert "is not a K210 firmware image" in line and "--force" in line
    assert cli("flash", "--dry-run", "--firmware-bin", pkl, "--force").code == 0
    image = firmware_bin(20_000)
    assert sdk_image(image) and boot_image_problem("fw.bin", image) is None
    assert build_plan(write(tmp_path / "fw.bin", image), []).items[0].address == 0
    # A flash dump (kflash's header already around the image) would be wrapped twice: refused.
    body = b"\x00" + struct.pack("<I", len(image)) + image
    dump = write(tmp_path / "dump.bin", body + hashlib.sha256(body).digest())
    assert "already carries kflash's boot header" in _one_line(cli("flash", "--dry-run", "--firmware-bin", dump))
