"""Small helpers over plain values that records, fusion and the reports share.

Pure Python: no torch, no NumPy (NumPy scalars are accepted through :mod:`numbers`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["is_missing", "mean", "order_key"]


def is_missing(value: Any) -> bool:
    """``None`` or a float NaN (how Parquet and CSV readers spell a missing value)."""
    if value is None:
        return True
    try:
        return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)
    except (TypeError, ValueError):
        return False


def mean(values: Iterable[float | None]) -> float | None:
    """Exact (``math.fsum``) mean of the values that are not ``None``; ``None`` when there are none."""
    present = [value for value in values if value is not None]
    return math.fsum(present) / len(present) if present else None


def order_key(value: Any) -> tuple:
    """Total, deterministic sort key over mixed values: None, then numbers, then strings, then the rest."""
    if value is None:
        return (0,)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (1, float(value), "")
    if isinstance(value, str):
        return (2, 0.0, value)
    return (3, 0.0, repr(value))
