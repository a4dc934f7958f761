"""Text that fits: tables and long lines wrapped to a 100-column terminal or CI log."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

TABLE_WIDTH = 100  # every table fits a 100-column terminal or CI log


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], width: int = TABLE_WIDTH) -> str:
    """Columns padded to their widest cell; the widest column wraps so that the table fits `width`."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    total = sum(widths) + 2 * (len(widths) - 1)
    if total > width and widths:
        wide = max(range(len(widths)), key=lambda i: widths[i])
        widths[wide] = max(len(headers[wide]), 12, widths[wide] - (total - width))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        cells = [textwrap.wrap(c, w) or [""] if len(c) > w else [c] for c, w in zip(row, widths)]
        for k in range(max(len(c) for c in cells)):
            lines.append("  ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines)


def fit_width(text: str, width: int = TABLE_WIDTH) -> str:
    """Lines longer than `width` wrapped at spaces (never inside a word or path), continuations indented."""
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False) or [line]
    return "\n".join(out)
