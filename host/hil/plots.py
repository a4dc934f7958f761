"""The PNGs of `k210 hil --report DIR`: confusion matrices, where board and TF disagree, output errors,
latency. Every figure is titled with the kmodel's name and the start of its sha256, so a PNG that
travels alone still says what it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DISAGREE = "#c0392b"  # the cells and bars a reader should look at


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def model_title(report: dict[str, Any]) -> str:
    """'xo.kmodel (sha256 fa478dffbbe4)': the model every figure is about."""
    name = Path(str(report.get("kmodel", "kmodel"))).name
    digest = str(report.get("kmodel_sha256") or "")[:12]
    return f"{name} (sha256 {digest})" if digest else name


def write_plots(out: Path, report: dict[str, Any], board: np.ndarray, simulator: np.ndarray,
                reference: np.ndarray | None, micros: np.ndarray, *, host_timed: bool = False) -> list[Path]:
    """`host_timed`: the boards were virtual (or host builds), so their latency is host time, not the K210's."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        _confusions(out / "confusion.png", report),
        _disagreements(out / "disagreements.png", report, board, simulator, reference),
        _errors(out / "errors.png", report, board, simulator, reference),
        _latency(out / "latency.png", report, micros, report["latency_us"], host_timed),
    ]


def _save(fig, path: Path) -> Path:
    from k210.core.fsutil import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    _pyplot().close(fig)
    return path


def _matrix(ax, matrix: np.ndarray, names: list[str], *, highlight_off_diagonal: bool) -> None:
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(names))
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    if len(names) > 12:
        return
    for (i, j), value in np.ndenumerate(matrix):
        off = highlight_off_diagonal and i != j and value > 0
        color = DISAGREE if off else ("white" if value > matrix.max() / 2 else "black")
        ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=9,
                fontweight="bold" if off else "normal")
        if off:
            ax.add_patch(_pyplot().Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=DISAGREE, linewidth=2))


def _confusions(path: Path, report: dict[str, Any]) -> Path:
    plt = _pyplot()
    order = [k for k in ("reference", "simulator", "board") if k in report["confusion"]]
    titles = {"reference": "TF reference", "simulator": "nncase simulator", "board": "board"}
    names = report["labels"]
    fig, axes = plt.subplots(1, len(order), figsize=(4.2 * len(order), 4.3), squeeze=False)
    for ax, key in zip(axes[0], order):
        matrix = np.asarray(report["confusion"][key])
        _matrix(ax, matrix, names, highlight_off_diagonal=False)
        ax.set_title(f"{titles[key]}: {np.trace(matrix) / max(1, matrix.sum()):.2%} right")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.suptitle(f"{model_title(report)}: {report['count']} {report['dataset']} images, true vs predicted")
    return _save(fig, path)


def _top1(outputs: np.ndarray) -> np.ndarray:
    return np.asarray(outputs).reshape(len(outputs), -1).argmax(1)


def disagreement_matrix(expected: np.ndarray, board: np.ndarray, classes: int) -> np.ndarray:
    """[expected class, board class] image counts: the diagonal agrees, everything else is a disagreement."""
    matrix = np.zeros((classes, classes), np.int64)
    expected, board = np.asarray(expected), np.asarray(board)
    valid = (expected < classes) & (board < classes)
    np.add.at(matrix, (expected[valid], board[valid]), 1)
    return matrix


def _disagreements(path: Path, report: dict[str, Any], board: np.ndarray, simulator: np.ndarray,
                   reference: np.ndarray | None) -> Path:
    """What HIL is for: the board's top-1 against TF's (and the simulator's), image by image.

    Off-diagonal cells (red) are images where the two disagree, whatever the true label."""
    plt = _pyplot()
    names = report["labels"]
    classes = len(names)
    pairs = [("simulator", _top1(simulator))]
    if reference is not None:
        pairs.insert(0, ("TF", _top1(reference)))
    board_top1 = _top1(board)
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 4.5), squeeze=False)
    for ax, (name, other) in zip(axes[0], pairs):
        matrix = disagreement_matrix(other, board_top1, classes)
        _matrix(ax, matrix, names, highlight_off_diagonal=True)
        differ = int(np.sum(other != board_top1))
        ax.set_title(f"board vs {name}: {differ} of {len(board_top1)} disagree"
                     + (f" ({differ / max(1, len(board_top1)):.2%})" if differ else ""),
                     color=DISAGREE if differ else "black")
        ax.set_xlabel("board's top-1")
        ax.set_ylabel(f"{name}'s top-1")
    fig.suptitle(f"{model_title(report)}: where the board disagrees (red, off the diagonal)")
    return _save(fig, path)


def _errors(path: Path, report: dict[str, Any], board: np.ndarray, simulator: np.ndarray,
            reference: np.ndarray | None) -> Path:
    plt = _pyplot()
    pairs = [("board − simulator", board - simulator)]
    if reference is not None:
        pairs = [("board − TF", board - reference), *pairs, ("simulator − TF", simulator - reference)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.9), squeeze=False)
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
    fig.suptitle(f"{model_title(report)}: output errors")
    return _save(fig, path)


def _latency(path: Path, report: dict[str, Any], micros: np.ndarray, summary: dict[str, float],
             host_timed: bool) -> Path:
    plt = _pyplot()
    what = "simulator time on the host (virtual board, not K210 time)" if host_timed else "on-board inference time"
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.hist(micros, bins=50, color="#9a8a5a" if host_timed else "#5a9a5a")
    for key, style in (("median", "-"), ("p90", "--")):
        ax.axvline(summary[key], color="black", linestyle=style, label=f"{key} {summary[key]:.0f} us")
    ax.set_xlabel(f"{what} (us)")
    ax.set_ylabel("images")
    label = "virtual board: host-simulated latency" if host_timed else "on-board latency"
    ax.set_title(f"{model_title(report)}\n{label}, {len(micros)} images (max {summary['max']:.0f} us)", fontsize=10)
    ax.legend()
    return _save(fig, path)
