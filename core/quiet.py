"""Silence the C++ chatter of TensorFlow and nncase, keeping it for error messages."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


class Captured:
    text: str = ""

    def tail(self, lines: int = 8) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def captured_output(fds: tuple[int, ...] = (1, 2)) -> Iterator[Captured]:
    """Redirect the process-level file descriptors (not just sys.stdout) into a temp file."""
    result = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = {fd: os.dup(fd) for fd in fds}
        try:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            yield result
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            result.text = sink.read().decode("utf-8", "replace")


VERBOSE_ENV = "K210_VERBOSE"  # set by `k210 ... --verbose`: third-party log lines reach stderr


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def preload_tensorflow() -> None:
    """Import TensorFlow once with its start-up banner (absl, oneDNN) kept off the terminal (unless verbose)."""
    if "tensorflow" in sys.modules:
        return
    if verbose():
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_output(fds=(2,)):
        import keras  # noqa: F401
        import tensorflow

    # Deprecation notices from TF's own v1 helpers (extract_sub_graph, ...) are not the user's business.
    tensorflow.get_logger().setLevel("ERROR")
