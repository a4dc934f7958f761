"""`k210 inspect`, `k210 lint FILE.kmodel` and converters.kmodel on 16 kmodels nobody here made.

The expected facts come from ../shared/kmodels-realworld/expectations.tsv, written from nncase's own
header definitions (see SOURCES.md there), not from this project's parser.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest

from k210.converters.kmodel import UnloadableKmodelError, parse_kmodel
from k210.host.cli import main as k210_main

REALWORLD = Path(__file__).resolve().parents[1].parent / "shared" / "kmodels-realworld"
FIRMWARE_KEYS = ("maixpy", "canmv", "sdk")


def _rows() -> list[dict]:
    if not REALWORLD.is_dir():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{REALWORLD} is missing; CI must have the real-world kmodels")
        return []
    lines = (REALWORLD / "expectations.tsv").read_text().splitlines()
    columns = ("file", "expect", "version", "inputs", "outputs", "kpu", "modules", "in0", "out_sizes",
               "out0_shape", "loads", "flash", "msg_must", "msg_must_not")
    return [dict(zip(columns, line.split("\t"))) for line in lines if line and not line.startswith("#")]


ROWS = _rows()
needs_files = pytest.mark.skipif(not ROWS, reason=f"{REALWORLD} not present")


def _ids(rows: list[dict]) -> list[str]:
    return [row["file"].removesuffix(".kmodel") for row in rows]


OK_ROWS = [row for row in ROWS if row["expect"] == "ok"]
REFUSED_ROWS = [row for row in ROWS if row["expect"] == "refuse"]


@needs_files
def test_all_sixteen_files_are_listed():
    assert len(ROWS) == 16 and {row["file"] for row in ROWS} == {p.name for p in REALWORLD.glob("*.kmodel")}


@needs_files
@pytest.mark.parametrize("row", OK_ROWS, ids=_ids(OK_ROWS))
def test_header_facts(row):
    info = parse_kmodel((REALWORLD / row["file"]).read_bytes())
    assert info.version == int(row["version"])
    assert len(info.inputs) == int(row["inputs"]) and len(info.outputs) == int(row["outputs"])
    assert info.has_kpu_code == (row["kpu"] == "yes")
    if row["modules"] != "-":
        assert [m.type for m in info.modules] == row["modules"].split(",")
    if row["in0"] != "-":
        dtype, shape = row["in0"].split(":")
        assert info.inputs[0].dtype == dtype and info.inputs[0].shape == [int(d) for d in shape.split("x")]
    assert [t.size for t in info.outputs] == [int(s) for s in row["out_sizes"].split(",")]
    if row["out0_shape"] != "-":
        assert info.outputs[0].shape == [int(d) for d in row["out0_shape"].split("x")]
    assert [info.loadable_by(key) for key in FIRMWARE_KEYS] == [v == "yes" for v in row["loads"].split(",")]
    if info.version == 3:  # nncase 0.1 writes float32 outputs
        assert all(t.dtype == "float32" for t in info.outputs)


@needs_files
@pytest.mark.parametrize("row", REFUSED_ROWS, ids=_ids(REFUSED_ROWS))
def test_unloadable_formats_are_named_not_called_corrupt(row, capsys):
    path = REALWORLD / row["file"]
    with pytest.raises(UnloadableKmodelError) as caught:
        parse_kmodel(path.read_bytes())
    message = str(caught.value)
    assert caught.value.format.version == int(row["version"])
    assert re.search(row["msg_must"], message), message
    if row["msg_must_not"] != "-":
        assert not re.search(row["msg_must_not"], message), message
    assert k210_main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(row["msg_must"], err)
    assert k210_main(["lint", str(path)]) == 1
    assert "will not run on a K210" in capsys.readouterr().out


@needs_files
def test_prerelease_v5_is_read_not_guessed():
    with pytest.raises(UnloadableKmodelError) as caught:
        parse_kmodel((REALWORLD / "v5pre_nncase-dev-2021-08-05_minist.kmodel").read_bytes())
    details = caught.value.format.details
    assert details["modules"][0]["type"] == "stackvm" and details["modules"][0]["inputs"] == 1
    assert "1.9" in str(caught.value)  # says which runtime it needs instead


@needs_files
@pytest.mark.parametrize("name, kpu, layers", [
    ("v3_standalone-demo_face_detect.kmodel", 23, 24),
    ("v3_maixpy-scripts_mnist.kmodel", 5, 11),
    ("v4_canmv-examples_mb-0.25.kmodel", 27, 35),
    ("v4_nncase-0.2_ulffd_landmark.kmodel", 53, 99),
    ("v4_nncase-0.2_iris.kmodel", 0, 4),
])
def test_kpu_layer_counts_match_sources(name, kpu, layers):
    info = parse_kmodel((REALWORLD / name).read_bytes())
    assert (info.kpu_layers, info.layers) == (kpu, layers)


@needs_files
def test_inspect_and_lint_say_kpu_for_v3_v4(capsys):
    path = REALWORLD / "v4_canmv-examples_face_detect_320x240.kmodel"
    assert k210_main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "31 of 33 layers on the KPU" in out and "(CPU)" not in out
    assert k210_main(["inspect", "--json", str(REALWORLD / "v3_trashclassifier_trash.kmodel")]) == 0
    data = json.loads(capsys.readouterr().out)
    data = data.get("result", data)  # the CLI may wrap JSON in an envelope
    assert data["kpu_code"] is True and len(data["inputs"]) == 1 and data["outputs"][0]["dtype"] == "float32"
    assert k210_main(["lint", str(REALWORLD / "v3_canmv-examples_ld5.kmodel")]) == 0
    out = capsys.readouterr().out
    assert "KPU code present" in out and "CPU only" not in out


@needs_files
def test_v3_output_text_names_its_version(capsys):
    assert k210_main(["inspect", str(REALWORLD / "v3_nncase-0.1-rc5_iris.kmodel")]) == 0
    out = capsys.readouterr().out
    assert "v3 stores none" in out and "v4 stores none" not in out


@needs_files
def test_shared_mempool_entry_is_eight_bytes():
    """nncase 1.x shared_mempool_desc is {u32 module, u32 size}: add one to a real kmodel's k210 module
    and the function descriptions after it must still read the same."""
    data = bytearray((REALWORLD / "v5_nncase-1.x_yolox_nano_224.kmodel").read_bytes())
    before = parse_kmodel(bytes(data))
    offset = 32 + struct.unpack_from("<I", data, 32 + 24)[0]  # second module (k210) header
    assert data[offset:offset + 4] == b"k210"
    size, n_pools, n_shared = struct.unpack_from("<3I", data, offset + 24)
    assert n_shared == 0
    struct.pack_into("<I", data, offset + 24, size + 8)
    struct.pack_into("<I", data, offset + 32, 1)
    insert_at = offset + 48 + 8 * n_pools
    data[insert_at:insert_at] = struct.pack("<2I", 0, 4096)
    after = parse_kmodel(bytes(data))
    assert after.modules[1].functions == before.modules[1].functions == 27
    assert after.inputs == before.inputs and after.outputs == before.outputs
