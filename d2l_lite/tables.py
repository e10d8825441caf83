"""Plain-text tables, so every framework prints its summaries the same way."""

from __future__ import annotations

from typing import Iterable, Sequence


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """Columns padded to their widest cell; numbers right-aligned with commas."""
    rows = [list(row) for row in rows]
    text = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells, header=False):
        return "  ".join(c.rjust(w) if numeric[i] and not header else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers, True), line(["-" * w for w in widths], True)]
                     + [line(r) for r in text])


def print_table(headers: Sequence[str], rows: Iterable[Sequence]) -> None:
    print(format_table(headers, rows))
