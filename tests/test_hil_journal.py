"""The HIL journal after a crash, an edit or a bad disk (issue 23): what `--resume` believes.

A line with a wrong sum (flipped bits, scores swapped, a line of another run, bytes that are not
UTF-8) is dropped and its image run again; a line with a right sum and a content that makes no sense
(a forged index, tensor, base64) is bad input, exit 2 with its line number; another run's journal is
refused. Never exit 3.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hil_support import tiny_models

from k210.core.errors import BadInputError
from k210.firmware import k210wire as w
from k210.host.hil.journal import BoardResult, Journal, seal
from k210.host.hil.messages import Tensor
from k210.host.hil.run import HilConfig, run_hil

IDENTITY = {"kmodel_sha256": "ab" * 32, "dataset": "xo", "preprocessing_sha256": "cd" * 32, "split": "test",
            "seed": 0, "count": 4}
OUTPUTS = ((w.DT_FLOAT32, (1, 2)),)


def _scores(a: float, b: float) -> Tensor:
    import numpy as np

    return Tensor(w.DT_FLOAT32, (1, 2), np.array([a, b], "<f4").tobytes())


def _journal(tmp_path: Path) -> tuple[Path, str]:
    """A journal of four results and a stats line; its path and run id."""
    path = tmp_path / "j.jsonl"
    journal = Journal.start(path, IDENTITY)
    for i in range(4):
        journal.record(BoardResult(i, [_scores(0.25 * i, 1 - 0.25 * i)], 100 + i, "b0"))
    journal.record_stats({"segment": 0, "seconds": 1.0, "boards": []})
    journal.close()
    return path, journal.run_id


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _replace_line(path: Path, number: int, line: bytes) -> None:
    lines = _lines(path)
    lines[number - 1] = line
    path.write_bytes(b"\n".join(lines) + b"\n")


def _resume(path: Path, identity: dict = IDENTITY):
    journal, results, segments = Journal.resume(path, identity, OUTPUTS)
    journal.close()
    return journal, results, segments


def _flip_bit_in_output(line: bytes) -> bytes:
    entry = json.loads(line)
    data = bytearray(base64.b64decode(entry["out"][0]["data"]))
    data[1] ^= 0x10
    old, new = entry["out"][0]["data"], base64.b64encode(bytes(data)).decode()
    return line.replace(old.encode(), new.encode())


def _swap_scores(line: bytes) -> bytes:
    entry = json.loads(line)
    data = base64.b64decode(entry["out"][0]["data"])
    old, new = entry["out"][0]["data"], base64.b64encode(data[4:] + data[:4]).decode()
    return line.replace(old.encode(), new.encode())


DAMAGE = {  # line 2 is image 0's result
    "a bit flipped in an output": _flip_bit_in_output,
    "image 0's scores swapped": _swap_scores,
    "a line without i": lambda line: line.replace(b'"i":0,', b""),
    "a bare number": lambda line: b"5",
    "bad base64": lambda line: line.replace(b'"data":"', b'"data":"!!'),
    "non-UTF-8 bytes": lambda line: line.replace(b'"board":"b0"', b'"board":"\xff\xfe"'),
    "a wrong tensor shape": lambda line: line.replace(b'"shape":[1,2]', b'"shape":[1,3]'),
    "an unknown dtype": lambda line: line.replace(b'"dtype":9', b'"dtype":99'),
    "index 99999": lambda line: line.replace(b'"i":0,', b'"i":99999,'),
    "index -1": lambda line: line.replace(b'"i":0,', b'"i":-1,'),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_line_is_dropped_counted_and_its_image_run_again(tmp_path, kind):
    path, _ = _journal(tmp_path)
    _replace_line(path, 2, DAMAGE[kind](_lines(path)[1]))
    journal, results, segments = _resume(path)
    assert sorted(results) == [1, 2, 3] and journal.damaged_lines == 1  # image 0 is to run again
    assert results[1].outputs[0] == _scores(0.25, 0.75) and segments[0]["segment"] == 0
    # The journal was rewritten without it: the next resume finds it clean, and a new result for image 0 counts.
    again, _, _ = Journal.resume(path, IDENTITY, OUTPUTS)
    again.record(BoardResult(0, [_scores(0, 1)], 7, "b1"))
    again.close()
    last, results, _ = _resume(path)
    assert last.damaged_lines == 0 and sorted(results) == [0, 1, 2, 3] and results[0].board == "b1"


FORGED = {  # well-formed lines (the right sum) that no run of this program writes
    "a line without i": ({"us": 1, "board": "b", "out": []}, "needs the keys i, us, board, out"),
    "index 99999": ({"i": 99999, "us": 1, "board": "b", "out": []}, "image index 99999 is not one of this run's"),
    "index -1": ({"i": -1, "us": 1, "board": "b", "out": []}, "image index -1"),
    "no outputs": ({"i": 0, "us": 1, "board": "b", "out": []}, "0 outputs, the kmodel has 1 to 1"),
    "bad base64": ({"i": 0, "us": 1, "board": "b", "out": [{"dtype": 9, "shape": [1, 2], "data": "!!AAAA"}]},
                   "output 0's data is not base64"),
    "a wrong tensor shape": ({"i": 0, "us": 1, "board": "b",
                              "out": [{"dtype": 9, "shape": [1, 3], "data": base64.b64encode(b"\0" * 12).decode()}]},
                             r"output 0 is float32\[1, 3\], the kmodel's is float32\[1, 2\]"),
    "a size that is not its shape's": ({"i": 0, "us": 1, "board": "b",
                                        "out": [{"dtype": 9, "shape": [1, 2], "data": "AAAA"}]},
                                       "output 0 holds 3 bytes, its shape"),
    "an unknown dtype": ({"i": 0, "us": 1, "board": "b", "out": [{"dtype": 99, "shape": [1, 2], "data": ""}]},
                         "unknown dtype 99"),
    "a dtype the kmodel has not": ({"i": 0, "us": 1, "board": "b",
                                    "out": [{"dtype": 4, "shape": [1, 2], "data": "AAA="}]},
                                   r"output 0 is uint8\[1, 2\]"),
    "a stats line without figures": ({"stats": {"segment": "x"}}, "a stats line needs"),
    "a key too many": ({"i": 0, "us": 1, "board": "b", "out": [], "x": 1}, "needs the keys i, us, board, out"),
}


@pytest.mark.parametrize("kind", list(FORGED))
def test_a_well_formed_line_with_nonsense_is_bad_input_with_its_line_number(tmp_path, kind):
    path, run_id = _journal(tmp_path)
    entry, message = FORGED[kind]
    _replace_line(path, 3, seal(run_id, entry).encode())
    with pytest.raises(BadInputError, match=rf"j\.jsonl line 3 is malformed: .*{message}"):
        Journal.resume(path, IDENTITY, OUTPUTS)


def _forge(run_id: str, body: bytes) -> bytes:
    """A line with the right sum for any body (seal() takes dicts only)."""
    from k210.host.hil.journal import _digest

    return body[:-1] + b',"sum":"' + _digest(run_id, body).encode() + b'"}'


def test_non_utf8_bytes_under_a_right_sum_are_bad_input(tmp_path):
    path, run_id = _journal(tmp_path)
    _replace_line(path, 2, _forge(run_id, b'{"i":0,"us":1,"board":"\xff","out":[]}'))
    with pytest.raises(BadInputError, match="line 2 is malformed"):
        Journal.resume(path, IDENTITY, OUTPUTS)


def test_a_line_of_another_run_is_damaged_and_another_runs_journal_refused(tmp_path):
    path, _ = _journal(tmp_path)
    other, _ = _journal(tmp_path / "other")  # the same run's settings, started again: another run id
    _replace_line(path, 2, _lines(other)[1])
    journal, results, _ = _resume(path)
    assert sorted(results) == [1, 2, 3] and journal.damaged_lines == 1
    for key, value in (("kmodel_sha256", "ef" * 32), ("preprocessing_sha256", "00" * 32), ("seed", 1),
                       ("count", 5), ("dataset", "mnist"), ("split", "train")):
        with pytest.raises(BadInputError, match=f"belongs to another run .{key} was"):
            Journal.resume(path, {**IDENTITY, key: value}, OUTPUTS)


def test_a_damaged_header_or_an_old_journal_is_refused(tmp_path):
    path, _ = _journal(tmp_path)
    header = _lines(path)[0]
    _replace_line(path, 1, header.replace(b'"seed":0', b'"seed":1'))  # the sum no longer fits
    with pytest.raises(BadInputError, match=r"line 1 \(its header\) is damaged"):
        Journal.resume(path, IDENTITY, OUTPUTS)
    old = json.dumps({"journal": "k210-hil-journal", "version": 1, **IDENTITY}).encode()
    _replace_line(path, 1, old)
    with pytest.raises(BadInputError, match="is a v1 journal, this k210 writes v2: rerun without --resume"):
        Journal.resume(path, IDENTITY, OUTPUTS)
    _replace_line(path, 1, b"\x00\xff not json")
    with pytest.raises(BadInputError, match="is not a k210 hil journal"):
        Journal.resume(path, IDENTITY, OUTPUTS)


# -- through `k210 hil --resume` on a virtual board (slow: a model is built, a board started) ----------


@pytest.mark.slow
def test_resume_runs_damaged_lines_again_and_says_so(cli, tmp_path):
    m = tiny_models()
    journal = tmp_path / "j.jsonl"
    common = ["hil", m["kmodel_a"], "--virtual", "--dataset", "xo", "--limit", "30", "--no-reference",
              "--workers", "1", "--journal", journal]
    r = cli(*common, "--json-out", tmp_path / "clean.json")
    assert r.code == 0, r.err
    clean = json.loads((tmp_path / "clean.json").read_text())["result"]
    lines = _lines(journal)
    index = {json.loads(line)["i"]: n for n, line in enumerate(lines) if b'"i":' in line}
    lines[index[0]] = _swap_scores(lines[index[0]])
    lines[index[7]] = _flip_bit_in_output(lines[index[7]])
    journal.write_bytes(b"\n".join(lines) + b"\n")
    r = cli(*common, "--resume", "--json-out", tmp_path / "resumed.json")
    assert r.code == 0, r.err
    resumed = json.loads((tmp_path / "resumed.json").read_text())["result"]
    assert resumed["journal"] == {"resumed_results": 28, "damaged_lines_dropped": 2}
    assert "journal: 28 results resumed, 2 damaged lines dropped (their images run again)" in r.out
    assert resumed["board_vs_simulator"] == clean["board_vs_simulator"]  # bit-identical again, image 0 included
    assert resumed["board_vs_simulator"]["bit_identical"] == 1.0
    # A forged line is bad input (exit 2, one line), never exit 3; another run's journal likewise.
    lines = _lines(journal)
    header = json.loads(lines[0])
    lines[3] = seal(header["run_id"], {"i": 99999, "us": 1, "board": "b", "out": []}).encode()
    journal.write_bytes(b"\n".join(lines) + b"\n")
    r = cli(*common, "--resume")
    assert r.code == 2 and "line 4 is malformed: image index 99999" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli(*common[:-4], "--seed", "3", "--journal", journal, "--resume")
    assert r.code == 2 and "belongs to another run" in r.err, r.err


def test_run_hil_binds_the_journal_to_the_preprocessing(tmp_path):
    """The same kmodel and data with another --mean: another run, whose journal is refused."""
    from k210.converters.preprocess import Overrides

    m = tiny_models()
    journal = tmp_path / "j.jsonl"
    journal.write_text("")  # replaced by the run below
    run_hil(HilConfig(kmodel=str(m["kmodel_a"]), virtual=True, dataset="xo", limit=4, no_reference=True, workers=1,
                      journal=str(journal)))
    header = json.loads(_lines(journal)[0])
    assert len(header["preprocessing_sha256"]) == 64 and len(header["run_id"]) == 32
    with pytest.raises(BadInputError, match="belongs to another run .preprocessing_sha256"):
        run_hil(HilConfig(kmodel=str(m["kmodel_a"]), dataset="xo", limit=4, no_reference=True, workers=1,
                          journal=str(journal), resume=True, overrides=Overrides(mean=(0.5,))))
