"""Where a uint8 kmodel loses accuracy, measured layer by layer (the library behind `k210 explain`).

Three sources of figures, each named for what it is:
- nncase's own quant-error dump (`CompileOptions.dump_quant_error`): a cosine per quantised layer,
  computed by nncase's IR evaluator on the last calibration sample only. Where nncase fused an
  activation into a KPU conv (a residual ADD + ReLU becomes one KPU conv) it compares the float value
  *before* the activation with the quantised value *after* it, so a low figure there need not be a loss.
- measured: the same build with chosen intermediate tensors added as kmodel outputs, run in nncase's
  simulator (the code the board runs) and compared with TFLite's value of that tensor.
- nncase's float evaluator right after import (`Compiler.create_evaluator(1)`), which tells an
  import problem from a quantisation problem. nncase 1.9 offers no evaluator for the quantised graph.

nncase runs in a child process (quant_worker.py) so that a crash becomes a one-line ToolFailure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError, ToolFailure

from .compile import CALIBRATE_METHODS  # one list: compile and explain offer the same methods

_LAYER_LINE = re.compile(r"^layer name: (.*)$")
_COSINE_LINE = re.compile(r"^cosine: (\S+)$")
# nncase IR ops that only move or convert data: they say nothing about where a layer computes.
_PLUMBING = {"Quantize", "Dequantize", "Bitcast", "Copy", "Transpose", "KPUUpload", "KPUDownload", "Call",
             "Constant", "Pad", "Slice", "Concat", "Input", "Output"}


@dataclass(frozen=True)
class BuildSpec:
    """One way to build the kmodel (the baseline or a fix to try)."""

    calibrate_method: str = "no_clip"
    input_type: str = "float32"  # "uint8": raw pixels in, nncase maps them onto input_range (and mean/std)
    input_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    use_mse_quant_w: bool = False
    quant: str = "uint8"  # "float": no PTQ, no KPU code (the upper bound a fix can reach)

    def describe(self) -> dict:
        return {"quant": self.quant, "calibrate_method": self.calibrate_method if self.quant == "uint8" else None,
                "input_type": self.input_type, "input_range": list(self.input_range),
                "use_mse_quant_w": self.use_mse_quant_w}


@dataclass
class Build:
    """What one nncase build gave: the kmodel, its outputs on the inputs asked for, nncase's dump."""

    kmodel: bytes
    outputs: list[np.ndarray]  # per kmodel output: [N, *shape without batch]
    import_outputs: list[np.ndarray]  # nncase's float import-stage evaluator, same layout
    nncase_cosines: list[tuple[str, float]]  # nncase's "layer name / cosine" lines, in its order
    regions: dict[str, tuple[str, str]]  # nncase IR node name -> (module "k210"/"main", op type)
    log: str
    seconds: float
    cut: bool = False  # decide stopped it after the first inputs: outputs are theirs only
    cpu_seconds: float = 0.0  # the child's CPU time (seconds is wall time, longer on a shared machine)


@dataclass(frozen=True)
class Layer:
    """One TFLite op and the tensor it writes: a row of the explanation."""

    op_index: int
    opcode: str
    tensor: int
    name: str
    shape: tuple[int, ...]
    inputs: tuple[int, ...] = ()  # the op's tensor inputs (weights included)


@dataclass
class LayerError:
    """Float (TFLite) vs quantised (kmodel in the simulator) at one tensor, over the probe images."""

    cosine: float
    max_abs_error: float
    relative_error: float  # ||q - f|| / ||f||
    float_min: float
    float_max: float
    float_p999: float  # 99.9th percentile of |f|: how wide the range is compared with typical values
    channel_cosines: list[float] | None = None  # per channel (last axis) over images and positions


@dataclass
class GraphLayers:
    layers: list[Layer]
    input_tensor: int
    output_tensors: list[int]
    tensor_names: dict[int, str] = field(default_factory=dict)


# --- the TFLite graph ---------------------------------------------------------------------------


def graph_layers(tflite: bytes) -> GraphLayers:
    """The ops of the first subgraph in execution order, each with the float tensor it writes."""
    from .tflite_reader import read_tflite

    info = read_tflite(tflite)
    if len(info.inputs) != 1:
        raise BadInputError(f"the model has {len(info.inputs)} inputs; explain takes single-input models")
    layers = []
    for op in info.ops:
        if not op.outputs:
            continue
        tensor = info.tensors[op.outputs[0]]
        if tensor.dtype != "float32":
            continue
        layers.append(Layer(op.index, op.opcode, tensor.index, tensor.name, tuple(int(d) for d in tensor.shape),
                            tuple(i for i in op.inputs if i >= 0)))
    return GraphLayers(layers, info.inputs[0].index, [t.index for t in info.outputs],
                       {t.index: t.name for t in info.tensors})


def with_outputs(tflite: bytes, tensors: list[int]) -> bytes:
    """The same graph with `tensors` as its outputs (ops nothing needs any more dropped).

    The probe build: nncase quantises everything up to each probed tensor as in the real build and
    dequantises the probed values to float32 outputs, so the simulator shows them.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    graph = model.subgraphs[0]
    needed = set(tensors)
    keep = []
    for op in reversed(graph.operators):
        if any(int(t) in needed for t in op.outputs):
            keep.append(op)
            needed.update(int(t) for t in op.inputs if int(t) >= 0)
    graph.operators = list(reversed(keep))
    graph.outputs = np.asarray(tensors, np.int32)
    model.signatureDefs = []  # the signature names the old outputs
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_tensors(tflite: bytes, inputs: np.ndarray, tensors: list[int]) -> dict[int, np.ndarray]:
    """TFLite's float value of each of `tensors` for each input: {tensor: [N, *shape]}."""
    import tensorflow as tf

    from k210.core.quiet import captured_output

    with captured_output():
        interpreter = tf.lite.Interpreter(model_content=tflite, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    shape = interpreter.get_input_details()[0]["shape"]
    values: dict[int, list[np.ndarray]] = {t: [] for t in tensors}
    for x in inputs:
        interpreter.set_tensor(index, np.asarray(x, np.float32).reshape(shape))
        interpreter.invoke()
        for t in tensors:
            values[t].append(np.array(interpreter.get_tensor(t)))
    return {t: np.stack(v) for t, v in values.items()}


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    p999: float  # 99.9th percentile of |x| (mean over the inputs)

    @property
    def peak(self) -> float:
        return max(abs(self.low), abs(self.high))


def tflite_ranges(tflite: bytes, inputs: np.ndarray, tensors: list[int]) -> dict[int, FloatRange]:
    """TFLite's float range of each of `tensors` over `inputs`, one input at a time (big graphs)."""
    stats: dict[int, list[tuple[float, float, float]]] = {t: [] for t in tensors}
    for x in inputs:
        values = tflite_tensors(tflite, x[None], tensors)
        for t, v in values.items():
            if v.size:
                stats[t].append((float(v.min()), float(v.max()), float(np.percentile(np.abs(v), 99.9))))
    return {t: FloatRange(min(s[0] for s in rows), max(s[1] for s in rows), float(np.mean([s[2] for s in rows])))
            for t, rows in stats.items() if rows}


# --- one nncase build, in a child process --------------------------------------------------------


def build(tflite: bytes | Path, spec: BuildSpec, *, input_shape: list[int], calibration: np.ndarray | Path | None,
          inputs: np.ndarray | Path | None = None, import_inputs: np.ndarray | Path | None = None,
          dump_quant_error: bool = False, dump_ir: bool = False, timeout: float = 3600,
          first: int = 0, decide: Callable[[list[np.ndarray]], bool] | None = None) -> Build:
    """Compile `tflite` as `spec` says; run the kmodel on `inputs` and nncase's float import on
    `import_inputs`; with dump_quant_error keep nncase's per-layer cosines (dump_ir: and its module
    regions, i.e. which node runs on the KPU).

    A Path instead of bytes or an array names a file written once and shared by many builds (.tflite,
    .npy). With `decide`, the kmodel first runs on the first `first` inputs; decide(their outputs) says
    whether to run the rest; when it says no, the Build holds those outputs only and `cut` is set."""
    if spec.calibrate_method not in CALIBRATE_METHODS:
        raise BadInputError(f"unknown calibration method '{spec.calibrate_method}' "
                            f"(choose from {', '.join(CALIBRATE_METHODS)})")
    if spec.quant == "uint8" and (calibration is None or (not isinstance(calibration, Path) and len(calibration) == 0)):
        raise BadInputError("uint8 quantisation needs calibration samples")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="k210-explain-") as tmp:
        work = Path(tmp)
        if isinstance(tflite, Path):
            model = str(tflite.resolve())
        else:
            (work / "model.tflite").write_bytes(tflite)
            model = "model.tflite"
        request = {
            "tflite": model, "quant": spec.quant, "input_type": spec.input_type,
            "input_range": list(spec.input_range), "input_shape": list(input_shape),
            "mean": None if spec.mean is None else list(spec.mean), "std": None if spec.std is None else list(spec.std),
            "calibrate_method": spec.calibrate_method, "use_mse_quant_w": spec.use_mse_quant_w,
            "dump_quant_error": dump_quant_error, "dump_ir": dump_ir,
            "calibration": None, "eval": None, "import_eval": None,
            "first": int(first) if decide is not None and inputs is not None else 0,
        }
        for key, array in (("calibration", calibration), ("eval", inputs), ("import_eval", import_inputs)):
            if isinstance(array, Path) and (key != "calibration" or spec.quant == "uint8"):
                request[key] = str(array.resolve())
            elif array is not None and (key != "calibration" or spec.quant == "uint8"):
                np.save(work / f"{key}.npy", np.ascontiguousarray(array))
                request[key] = f"{key}.npy"
        (work / "request.json").write_text(json.dumps(request))
        returncode, stdout, stderr = _run_worker(work, timeout, decide if request["first"] else None)
        log = stdout + stderr
        if returncode < 0:
            raise ToolFailure(f"nncase crashed ({signal.Signals(-returncode).name}) building the kmodel "
                              f"({spec.calibrate_method}, {spec.input_type} input)")
        result_file = work / "result.json"
        if not result_file.exists():
            lines = [line for line in log.strip().splitlines() if line.strip()]
            raise ToolFailure(f"nncase failed (exit {returncode}): {lines[-1][:300] if lines else 'no output'}")
        result = json.loads(result_file.read_text())
        if not result["ok"]:
            raise ToolFailure(f"nncase refused the model: {result['error']}")
        return Build(
            kmodel=(work / "model.kmodel").read_bytes(),
            outputs=[_drop_batch(np.load(work / f"outputs_{i}.npy")) for i in range(result["outputs"])],
            import_outputs=[_drop_batch(np.load(work / f"import_{i}.npy")) for i in range(result["import_outputs"])],
            nncase_cosines=parse_quant_error(stdout),
            regions=read_regions(work / "dump") if dump_ir else {},
            log=log,
            seconds=time.perf_counter() - started,
            cut=bool(result.get("cut")),
            cpu_seconds=float(result.get("cpu_seconds", 0.0)),
        )


def _run_worker(work: Path, timeout: float, decide: Callable[[list[np.ndarray]], bool] | None
                ) -> tuple[int, str, str]:
    """quant_worker in `work`: (exit code, stdout, stderr). With `decide`, the worker says on a pipe of its
    own (not stdout, which nncase prints to) when the first outputs are written, and reads go/stop on stdin."""
    command = [sys.executable, "-m", "k210.converters.quant_worker", "request.json"]
    if decide is None:
        try:
            proc = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolFailure(f"nncase did not finish within {timeout:.0f} s") from None
        return proc.returncode, proc.stdout, proc.stderr
    read_end, write_end = os.pipe()
    with open(work / "stdout.txt", "w") as out, open(work / "stderr.txt", "w") as err:
        try:
            child = subprocess.Popen([*command, str(write_end)], cwd=work, stdin=subprocess.PIPE, stdout=out,
                                     stderr=err, text=True, pass_fds=(write_end,))
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            child.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            with os.fdopen(read_end, "rb") as ready:
                said = ready.read(1)  # b"": the worker ended before (an error, a crash or the timeout)
            if said and child.stdin is not None:
                count = json.loads((work / "first.json").read_text())["outputs"]
                go = decide([_drop_batch(np.load(work / f"first_{i}.npy")) for i in range(count)])
                try:
                    child.stdin.write("go\n" if go else "stop\n")
                    child.stdin.flush()
                except BrokenPipeError:  # the worker died meanwhile: its exit code and result.json say how
                    pass
            returncode = child.wait()
        except BaseException:
            child.kill()
            child.wait()
            raise
        finally:
            timer.cancel()
            if child.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    child.stdin.close()
        if timed_out.is_set():
            raise ToolFailure(f"nncase did not finish within {timeout:.0f} s")
    return returncode, (work / "stdout.txt").read_text(errors="replace"), (work / "stderr.txt").read_text(
        errors="replace")


def _drop_batch(x: np.ndarray) -> np.ndarray:
    """[N, 1, ...] (the simulator keeps each image's batch of 1) -> [N, ...]."""
    return x.reshape(x.shape[0], *x.shape[2:]) if x.ndim > 1 and x.shape[1] == 1 else x


def parse_quant_error(stdout: str) -> list[tuple[str, float]]:
    """nncase's `4.5. Summarize accumulated quant error` block: [(node name, cosine)]."""
    found: list[tuple[str, float]] = []
    name: str | None = None
    for line in stdout.splitlines():
        layer = _LAYER_LINE.match(line)
        if layer:
            name = layer.group(1).strip()
            continue
        cosine = _COSINE_LINE.match(line)
        if cosine and name is not None:
            try:
                found.append((name, float(cosine.group(1))))
            except ValueError:
                found.append((name, float("nan")))  # nncase prints -nan for an all-zero layer
            name = None
    return found


def read_regions(dump_dir: Path) -> dict[str, tuple[str, str]]:
    """nncase's module regions after merging (ir_merge_module_regions/*.nnir.pb, ONNX protobufs):
    {node name: (module, op type)}; module "k210" is KPU code, "main" runs on the CPU."""
    import onnx

    regions: dict[str, tuple[str, str]] = {}
    folder = dump_dir / "ir_merge_module_regions"
    for path in sorted(folder.glob("*.nnir.pb")):
        module = "k210" if path.name.startswith("k210") else "main"
        try:
            graph = onnx.load(str(path)).graph
        except Exception:  # a dump nncase left half-written: placement falls back to lint's rules
            continue
        for node in graph.node:
            if node.op_type != "Constant":
                regions[node.name] = (module, node.op_type)
    return regions


# --- tying nncase's names to TFLite's tensors ----------------------------------------------------


def owner_tensor(node_name: str, tensor_names: set[str]) -> str | None:
    """The TFLite tensor an nncase node came from: nncase names nodes `<tensor>/<what>`
    (`add/binary`, `conv2d_1/conv/kpu_download`) or `<tensor>_<n>` (`depthwise_conv2d_7_0`)."""
    name = node_name
    while name:
        if name in tensor_names:
            return name
        trimmed = re.sub(r"_\d+$", "", name)
        if trimmed != name and trimmed in tensor_names:
            return trimmed
        if "/" not in name:
            return None
        name = name.rsplit("/", 1)[0]
    return None


def placements(layers: list[Layer], regions: dict[str, tuple[str, str]]) -> dict[int, str]:
    """{tensor: "KPU" | "CPU" | "fused"} from nncase's regions: "fused" when nncase kept no compute node
    of the layer's own (a ReLU folded into the KPU conv's activation table, a reshape folded away)."""
    names = {layer.name for layer in layers}
    kinds: dict[str, set[str]] = {}
    for node, (module, op_type) in regions.items():
        owner = owner_tensor(node, names)
        if owner is None or op_type in _PLUMBING:
            continue
        kinds.setdefault(owner, set()).add("KPU" if module == "k210" and op_type.startswith("KPU") else "CPU")
    found = {}
    for layer in layers:
        where = kinds.get(layer.name)
        found[layer.tensor] = "fused" if not where else ("KPU" if "KPU" in where else "CPU")
    return found


def nncase_cosine_by_tensor(layers: list[Layer], cosines: list[tuple[str, float]]) -> dict[int, float]:
    names = {layer.name: layer.tensor for layer in layers}
    found: dict[int, float] = {}
    for node, cosine in cosines:
        owner = owner_tensor(node, set(names))
        if owner is not None:
            found.setdefault(names[owner], cosine)
    return found


# --- comparing ------------------------------------------------------------------------------------


def layer_error(reference: np.ndarray, quantised: np.ndarray, channels: int | None = None) -> LayerError:
    """`channels`: the tensor's last axis, measured channel by channel too (a wiped narrow channel hides
    behind a wide one in the whole tensor's cosine)."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    got = np.asarray(quantised, np.float64).reshape(len(quantised), -1)
    if ref.shape != got.shape:
        raise ToolFailure(f"probe output has {got.shape[1]} values per image, TFLite's tensor {ref.shape[1]}")
    cosine = _cosines(ref, got)
    per_channel = None
    if channels and channels > 1 and ref.size % channels == 0:
        per_channel = [float(c) for c in _cosines(ref.reshape(-1, channels).T, got.reshape(-1, channels).T)]
    ref_norm = float(np.linalg.norm(ref))
    return LayerError(
        cosine=float(cosine.mean()),
        max_abs_error=float(np.abs(got - ref).max()),
        relative_error=float(np.linalg.norm(got - ref) / ref_norm) if ref_norm > 0 else 0.0,
        float_min=float(ref.min()),
        float_max=float(ref.max()),
        float_p999=float(np.percentile(np.abs(ref), 99.9)),
        channel_cosines=per_channel,
    )


def output_cosine(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Mean per-image cosine over all outputs joined (the figure the issue's 0.20 is)."""
    ref = np.concatenate([np.asarray(r, np.float64).reshape(len(r), -1) for r in reference], axis=1)
    got = np.concatenate([np.asarray(c, np.float64).reshape(len(c), -1) for c in candidate], axis=1)
    return float(_cosines(ref, got).mean())


def _cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per-row cosine; 1 where both rows are zero, 0 where only one is (a zero output is no agreement)."""
    ref_norm, got_norm = np.linalg.norm(ref, axis=1), np.linalg.norm(got, axis=1)
    norms = ref_norm * got_norm
    return np.where(norms > 0, (ref * got).sum(axis=1) / np.where(norms > 0, norms, 1),
                    ((ref_norm == 0) & (got_norm == 0)).astype(float))
