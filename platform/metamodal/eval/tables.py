"""Result tables: Markdown for files and READMEs, aligned text for terminals (same content)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The one Markdown table writer: cells already formatted by the caller."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table(
    rows: Mapping[str, Mapping[str, object]],
    columns: Sequence[str],
    first: str = "model",
    markdown: bool = False,
) -> str:
    header = [first, *columns]
    body = [[name, *(_fmt(r.get(c, "")) for c in columns)] for name, r in rows.items()]
    if markdown:
        return markdown_table(header, body)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*r) for r in body]
    )
