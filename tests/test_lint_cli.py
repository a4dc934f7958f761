"""`k210 lint` on the command line: exit codes, one-line errors, JSON, and speed (no TensorFlow)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_lint_models import one_op_tflite

from k210.host.cli import main

ABS, ELU, TANH, CUSTOM = 101, 111, 28, 32
PLACEMENTS = {"kpu", "kpu-partial", "cpu", "unsupported"}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def kmodel_v5(*module_types: str) -> bytes:
    """A kmodel v5 header with the given modules (no functions): enough for the header reader."""
    modules = b"".join(
        struct.pack("<16s8I", kind.encode(), 1, 48, 48 + 8, 1, 0, 0, 0, 0) + struct.pack("<B3sI", 3, b"", 1024)
        for kind in module_types
    )
    return struct.pack("<4s7I", b"LDMK", 5, 32, 0, 8, len(module_types), 0, 0) + modules


def lint(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["lint", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str) -> None:
    assert err.startswith("k210 lint: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_clean_model_exits_0_with_a_table_and_a_verdict(tmp_path, capsys):
    code, out, _ = lint(capsys, str(write(tmp_path, "abs.tflite", one_op_tflite(ABS))))
    assert code == 0
    assert "#  name" in out and "ABS" in out and "cpu" in out
    assert "assuming uint8 PTQ" in out and out.rstrip().splitlines()[-1].startswith("verdict: OK")


def test_text_fits_100_columns_whatever_the_path(tmp_path, capsys):
    deep = tmp_path / ("a_folder_with_a_rather_long_name_" * 3) / "and_another_one_below_it"
    deep.mkdir(parents=True)
    path = str(write(deep, "my_favourite_model_with_a_long_name.tflite", one_op_tflite(ABS)))
    code, out, _ = lint(capsys, path)
    assert code == 0 and len(path) > 100 and path in out.splitlines()  # the path alone on its line, whole
    assert all(len(line) <= 100 for line in out.splitlines() if line != path)


def test_unsupported_op_exits_1_and_quotes_nncase(tmp_path, capsys):
    code, out, _ = lint(capsys, str(write(tmp_path, "elu.tflite", one_op_tflite(ELU))))
    assert code == 1
    assert "Unsupported tflite opcode: ELU" in out and "use ReLU or LeakyReLU" in out
    assert out.rstrip().splitlines()[-1].startswith("verdict: FAIL")


def test_json_report_format(tmp_path, capsys):
    code, out, _ = lint(capsys, str(write(tmp_path, "elu.tflite", one_op_tflite(ELU))), "--json")
    data = json.loads(out)["result"]
    assert code == 1 and data["ok"] is False
    assert {"ok", "compiler", "quant", "ops", "problems", "notes", "memory", "loaders", "firmware",
            "passed"} <= set(data)
    assert data["compiler"] == "nncase1.9" and data["quant"] == "uint8"
    assert all({"name", "op", "placement", "reason"} <= set(op) for op in data["ops"])
    assert {op["placement"] for op in data["ops"]} <= PLACEMENTS
    assert data["problems"] and isinstance(data["memory"]["kpu_ram_bytes"], int)
    assert {fw["key"] for fw in data["loaders"]} == {"maixpy", "canmv", "sdk"}


def test_compiler_and_quant_options(tmp_path, capsys):
    model = str(write(tmp_path, "tanh.tflite", one_op_tflite(TANH)))
    code, out, _ = lint(capsys, model, "--firmware", "maixpy", "--json")
    data = json.loads(out)["result"]
    assert code == 1 and "Not supported tflite opcode: TANH" in data["problems"][0]
    assert data["compiler"] == "nncase0.2" and data["firmware"] == "maixpy" and data["passed"] is False
    assert lint(capsys, model, "--compiler", "nncase0.2")[0] == 1  # the old option, kept hidden
    assert next(fw for fw in data["loaders"] if fw["key"] == "maixpy")["loads"]
    code, out, _ = lint(capsys, model, "--quant", "float", "--json")
    assert code == 0 and json.loads(out)["result"]["quant"] == "float"


@pytest.mark.parametrize("name,data,message", [
    ("random.tflite", bytes(range(256)) * 4, "TFL3"),
    ("empty.tflite", b"", "empty"),
    ("truncated.tflite", one_op_tflite(ABS)[:60], "truncated"),
    ("model.xyz", b"hello", "cannot tell what kind of model"),
])
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, name, data, message):
    code, out, err = lint(capsys, str(write(tmp_path, name, data)))
    assert code == 2 and not out
    assert_one_line_error(err)
    assert message in err


def test_missing_file_exits_2(tmp_path, capsys):
    code, _, err = lint(capsys, str(tmp_path / "nope.tflite"))
    assert code == 2
    assert_one_line_error(err)
    assert "not found" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["lint", str(write(tmp_path, "abs.tflite", one_op_tflite(ABS))), "--compiler", "nncase2"])
    assert exc.value.code == 2


def test_kmodel_findings_feed_the_same_report(tmp_path, capsys):
    code, out, _ = lint(capsys, str(write(tmp_path, "m.kmodel", kmodel_v5("stackvm", "k210"))), "--json", "--strict")
    data = json.loads(out)["result"]
    assert code == 0 and data["kmodel"]["kpu_code"] is True
    assert [(op["op"], op["placement"]) for op in data["ops"]] == [("stackvm", "cpu"), ("k210", "kpu")]
    assert not next(fw for fw in data["loaders"] if fw["key"] == "maixpy")["loads"]
    cpu_only = str(write(tmp_path, "cpu.kmodel", kmodel_v5("stackvm")))
    assert lint(capsys, cpu_only)[0] == 0
    code, out, _ = lint(capsys, cpu_only, "--strict")
    assert code == 1 and "no k210 module" in out


def test_corrupt_kmodel_exits_2(tmp_path, capsys):
    code, _, err = lint(capsys, str(write(tmp_path, "bad.kmodel", b"LDMK\x05\0\0\0" + b"\xff" * 40)))
    assert code == 2
    assert_one_line_error(err)


def test_onnx_model(tmp_path, capsys):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w3 = numpy_helper.from_array(np.ones((8, 1, 3, 3), np.float32), "w3")
    w5 = numpy_helper.from_array(np.ones((8, 8, 5, 5), np.float32), "w5")
    nodes = [
        helper.make_node("Conv", ["x", "w3"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv3"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("Conv", ["p", "w5"], ["c5"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], name="conv5"),
        helper.make_node("Celu", ["c5"], ["y"], name="celu"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 14, 14])], [w3, w5])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    code, out, _ = lint(capsys, str(path), "--json")
    data = json.loads(out)["result"]
    assert code == 0 and data["format"] == "onnx"
    assert [op["placement"] for op in data["ops"]] == ["kpu", "kpu", "kpu", "cpu", "cpu"]
    code, out, _ = lint(capsys, str(path), "--compiler", "nncase0.2", "--json")
    assert code == 1 and "Not supported ONNX opcode: Celu" in json.loads(out)["result"]["problems"][0]


def test_onnx_without_the_onnx_package_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    code, _, err = lint(capsys, str(write(tmp_path, "m.onnx", b"\x08\x07")))
    assert code == 2
    assert_one_line_error(err)
    assert "pip install onnx" in err


def test_tflite_lint_is_fast_and_never_imports_tensorflow(tmp_path):
    model = write(tmp_path, "abs.tflite", one_op_tflite(ABS))
    probe = (
        "import sys, time; t = time.perf_counter(); from k210.host.cli import main; code = main(['lint', sys.argv[1]]);"
        "print(round(time.perf_counter() - t, 3), code, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe, str(model)], capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - started
    seconds, code, tensorflow, keras = proc.stdout.strip().splitlines()[-1].split()
    assert (code, tensorflow, keras) == ("0", "False", "False")
    assert wall < 5.0, f"a fresh `k210 lint x.tflite` took {wall:.1f} s"
