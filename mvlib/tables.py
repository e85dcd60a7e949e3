"""Tables as text: one formatter for notebook cells, the CLI and the measurement reports."""

from __future__ import annotations

import numpy as np


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.2f}"
    return str(value)


def format_table(headers, rows, align: str | None = None, markdown: bool = False) -> str:
    """A plain-text table (deterministic, so nbval can compare it), or a markdown one. Integers get
    thousands separators, floats two decimals; strings are kept as they are.

    ``align``: one character per column, ``"l"`` or ``"r"``; by default numbers right, text left.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    if align is None:
        first = rows[0] if rows else [""] * len(headers)
        align = "".join("r" if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) else "l" for v in first)
    widths = [max([len(str(h))] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values, sep: str = "  ") -> str:
        return sep.join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align))

    header = [str(h) for h in headers]
    if markdown:
        rule = "|" + "|".join("-" * (w + 1) + ":" if a == "r" else "-" * (w + 2) for w, a in zip(widths, align)) + "|"
        return "\n".join(["| " + line(header, " | ") + " |", rule] + ["| " + line(r, " | ") + " |" for r in cells])
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header).rstrip(), rule] + [line(r).rstrip() for r in cells])
