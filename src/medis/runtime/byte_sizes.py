"""Sizes in bytes as users write them (``6GB``, ``6GiB``, ``512MB``, ``4e9``) and as we print them."""

from __future__ import annotations

import re

__all__ = ["SIZE_PATTERN", "format_bytes", "parse_size"]

UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
         "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
"""Decimal units, and binary ones with an ``i`` (case-insensitive)."""
SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?(?:[eE]\d+)?)\s*(" + "|".join(u for u in UNITS if u) + r")?\s*",
                          re.IGNORECASE)


def parse_size(value: object) -> int | None:
    """Bytes of ``value`` (a positive number of bytes, or a text such as ``6GB``), ``None`` if it is
    none of these or not more than 0 bytes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        size = int(value)
    elif isinstance(value, str) and (match := SIZE_PATTERN.fullmatch(value)):
        size = int(float(match.group(1)) * UNITS[(match.group(2) or "").lower()])
    else:
        return None
    return size if size > 0 else None


def format_bytes(size: float) -> str:
    """``3.1 GB``: bytes in decimal units, 3 significant digits."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(size) >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"
