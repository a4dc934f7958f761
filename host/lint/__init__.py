"""`k210 lint`: will this model run on a K210, and where (KPU, KPU with pad/crop, CPU, not at all)?

Light to import: TensorFlow, Keras and onnx are imported only on the paths that need them, so
linting a .tflite file stays fast enough for an editor or a pre-commit hook.
"""

from .report import Finding, LintReport
from .sources import confirm_path, lint_model, lint_path
from .tflite_lint import lint_tflite

__all__ = ["Finding", "LintReport", "confirm_path", "lint_model", "lint_path", "lint_tflite"]
