"""Table formatting shared by every report: Markdown tables, CSV text, number cells, target order.

Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from medis.attacks.targets import table_order
from medis.results.records import csv_field

__all__ = ["cell", "markdown_table", "rows_csv", "target_order"]

target_order = table_order
"""Sort key of a target name: the order of :data:`medis.attacks.targets.TARGET_KINDS`, others after."""


def cell(value: Any, decimals: int, scale: float = 1.0) -> str:
    """A number with fixed decimals, ``-`` for None / NaN, ``inf`` for infinity."""
    if value is None:
        return "-"
    number = float(value) * scale
    if math.isnan(number):
        return "-"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.{decimals}f}"


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped), ending with a newline.

    Args:
        headers: the column titles.
        rows: the cells of each row, one per header.

    Raises:
        ValueError: no header, or a row has not as many cells as there are headers.
    """
    if not headers:
        raise ValueError("markdown_table needs at least one header")
    lines = ["| " + " | ".join(_escape(h) for h in headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for index, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {index} has {len(row)} cells, expected {len(headers)}")
        lines.append("| " + " | ".join(_escape(text) for text in row) + " |")
    return "\n".join(lines) + "\n"


def rows_csv(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """CSV text (``\\n`` line ends) of ``rows`` under the header ``columns``; a missing key or None
    is an empty field, floats are written exactly (``repr``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_field(row.get(column)) for column in columns])
    return buffer.getvalue()
