"""What the optional `ml` extra brings, and the one line a command says when it is not installed."""

from __future__ import annotations

ML_EXTRA = "ml"
INSTALL_ML = "pip install 'k210-deploy[ml]'"
# Top-level modules of the `ml` extra's distributions (pyproject.toml) and of what they pull in.
ML_MODULES = frozenset({"tensorflow", "keras", "tf_keras", "nncase", "_nncase", "tflite", "onnx", "matplotlib",
                        "h5py", "ml_dtypes", "absl", "flatbuffers", "google"})


def missing_ml_module(exc: BaseException) -> str | None:
    """The module of the `ml` extra whose absence raised `exc`, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    return top if top in ML_MODULES else None


def needs_ml_line(module: str, what: str = "this command") -> str:
    """`this command needs the ml extra (no module named 'tensorflow' here): pip install 'k210-deploy[ml]'`"""
    return f"{what} needs the {ML_EXTRA} extra (no module named {module!r} here): {INSTALL_ML}"
