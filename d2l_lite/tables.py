"""Plain-text tables, so every framework prints its summaries the same way."""

from __future__ import annotations

import re
import textwrap
from typing import Iterable, Mapping, Optional, Sequence


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value, decimals: Optional[int] = None) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float) and decimals is not None:
        return f"{value:,.{decimals}f}"
    if isinstance(value, float):  # 4 significant digits, never 1.91e+04
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence],
                 decimals: Optional[Mapping[str, int]] = None) -> str:
    """Columns padded to their widest cell; numbers right-aligned with commas.
    ``decimals`` fixes the digits after the point of a column's floats, by
    header (``{"final acc": 3}``: 0.800, not 0.8 beside 0.877)."""
    rows = [list(row) for row in rows]
    places = [(decimals or {}).get(h) for h in headers]
    text = [[_cell(v, d) for v, d in zip(row, places)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells, header=False):
        return "  ".join(c.rjust(w) if numeric[i] and not header else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers, True), line(["-" * w for w in widths], True)]
                     + [line(r) for r in text])


def print_table(headers: Sequence[str], rows: Iterable[Sequence],
                decimals: Optional[Mapping[str, int]] = None) -> None:
    print(format_table(headers, rows, decimals))


def print_fields(headers: Sequence[str], fields: Sequence[str], *objects) -> None:
    """One row per attribute name in ``fields``, with its value on each of
    ``objects``: e.g. a recipe beside the copy that a run uses."""
    print_table(headers, [(f, *(str(getattr(o, f)) for o in objects)) for f in fields])


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``: a count and its noun, as a sentence says them."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def fit(text: str, width: int = 75) -> str:
    """``text`` (a framework's summary or repr) narrowed to ``width`` columns for the
    page: character columns blank on every line with letters or digits are dropped
    beyond two in a row (a table's padding; its rules lose the same columns), then
    each line still too long wraps with a hanging indent, never inside a tuple
    of numbers."""
    lines = text.rstrip("\n").splitlines()
    length = max(map(len, lines), default=0)
    if length > width:  # drop the padding columns
        content = [line for line in lines if any(ch.isalnum() for ch in line)]
        blank = [all(i >= len(line) or line[i] == " " for line in content)
                 for i in range(length)]
        drop = {i for i in range(2, length) if blank[i] and blank[i - 1] and blank[i - 2]}
        lines = ["".join(ch for i, ch in enumerate(line) if i not in drop).rstrip()
                 for line in lines]
    out = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        tight = re.sub(r"\([\d, ]*\)", lambda m: m[0].replace(" ", "\0"), line)
        out += [part.replace("\0", " ") for part in textwrap.wrap(
            tight, width, subsequent_indent=indent, break_on_hyphens=False)]
    return "\n".join(out)
