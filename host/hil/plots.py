"""The PNGs of `k210 hil --report DIR`: confusion matrices, output errors, on-board latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def write_plots(out: Path, report: dict[str, Any], board: np.ndarray, simulator: np.ndarray,
                reference: np.ndarray | None, micros: np.ndarray) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        _confusions(out / "confusion.png", report),
        _errors(out / "errors.png", board, simulator, reference),
        _latency(out / "latency.png", micros, report["latency_us"]),
    ]


def _confusions(path: Path, report: dict[str, Any]) -> Path:
    plt = _pyplot()
    order = [k for k in ("reference", "simulator", "board") if k in report["confusion"]]
    titles = {"reference": "TF reference", "simulator": "nncase simulator", "board": "board"}
    names = report["labels"]
    fig, axes = plt.subplots(1, len(order), figsize=(4.2 * len(order), 4.0), squeeze=False)
    for ax, key in zip(axes[0], order):
        matrix = np.asarray(report["confusion"][key])
        ax.imshow(matrix, cmap="Blues")
        ax.set_title(f"{titles[key]}: {np.trace(matrix) / max(1, matrix.sum()):.2%} right")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ticks = range(len(names))
        ax.set_xticks(ticks, names)
        ax.set_yticks(ticks, names)
        if len(names) <= 12:
            for (i, j), value in np.ndenumerate(matrix):
                ax.text(j, i, str(value), ha="center", va="center",
                        color="white" if value > matrix.max() / 2 else "black", fontsize=9)
    fig.suptitle(f"{report['count']} {report['dataset']} images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _errors(path: Path, board: np.ndarray, simulator: np.ndarray, reference: np.ndarray | None) -> Path:
    plt = _pyplot()
    pairs = [("board − simulator", board - simulator)]
    if reference is not None:
        pairs = [("board − TF", board - reference), *pairs, ("simulator − TF", simulator - reference)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, (title, err) in zip(axes[0], pairs):
        err = err.reshape(-1)
        if np.any(err):
            ax.hist(err, bins=60, color="#3b6ea5", log=True)
        else:
            ax.bar([0.0], [len(err)], width=0.1, color="#3b6ea5")
            ax.set_xlim(-1, 1)
            ax.text(0.5, 0.5, f"all {len(err)} outputs\nbit-identical", transform=ax.transAxes, ha="center")
        ax.set_title(f"{title}: max |e| {np.abs(err).max():.3g}" if len(err) else title)
        ax.set_xlabel("output value difference")
        ax.set_ylabel("outputs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _latency(path: Path, micros: np.ndarray, summary: dict[str, float]) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(micros, bins=50, color="#5a9a5a")
    for key, style in (("median", "-"), ("p90", "--")):
        ax.axvline(summary[key], color="black", linestyle=style, label=f"{key} {summary[key]:.0f} us")
    ax.set_xlabel("on-board inference time (us)")
    ax.set_ylabel("images")
    ax.set_title(f"on-board latency, {len(micros)} images (max {summary['max']:.0f} us)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
