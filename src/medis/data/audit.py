"""An audit of a split's masks before an attack: how many are not cleanly binary, coded 0/1, empty
or full. Reading binarises every mask (:func:`medis.data.io.read_mask`); the audit says how often
that changed something, so that a user learns once, with counts and an example path, instead of
never (an all-empty mask makes an untargeted attack trivially "succeed" or fail)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medis.data.io import binarise, read_mask_levels
from medis.errors import DataError

__all__ = ["MIN_SIDE", "MaskAudit", "audit_masks", "refuse_tiny"]

MIN_SIDE = 6
"""The smallest image side an attack can judge: SSIM's 11-tap window reflects 5 pixels at each border
(:mod:`medis.metrics.ssim`), which needs at least 6."""


def refuse_tiny(path: str | Path, shape: tuple[int, ...]) -> None:
    """A one-line :class:`~medis.errors.DataError` naming ``path`` when its (H, W[, C]) ``shape`` has a
    side under :data:`MIN_SIDE` (the mask and its image have the same size)."""
    height, width = int(shape[0]), int(shape[1])
    if min(height, width) < MIN_SIDE:
        raise DataError(f"{path}: image of {width}x{height} px is too small to attack; the smallest side "
                        f"must be at least {MIN_SIDE} px (SSIM's window)")


@dataclass
class MaskAudit:
    """Counts over the audited masks, with up to three example paths for each finding."""

    total: int = 0
    non_binary: list[str] = field(default_factory=list)
    zero_one: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One sentence per finding (empty when every mask is 0/255 with some foreground and background)."""
        found = []
        for items, what in ((self.non_binary, "hold grey levels other than 0 and 255 (binarised at > 127)"),
                            (self.zero_one, "are coded 0/1 (1 read as foreground)"),
                            (self.empty, "have no foreground"),
                            (self.full, "are all foreground")):
            if items:
                examples = ", ".join(items[:3])
                found.append(f"{len(items)} of {self.total} masks {what}; e.g. {examples}")
        return found

    def add(self, path: str | Path, levels: np.ndarray) -> np.ndarray:
        """Count one mask from its stored grey levels (:func:`medis.data.io.read_mask_levels`);
        returns its binarised (H, W) bool mask, so a caller that needs the mask reads it only once."""
        self.total += 1
        values = np.unique(levels)
        if values.max(initial=0) == 1:
            self.zero_one.append(str(path))
        elif not np.isin(values, (0, 255)).all():
            self.non_binary.append(str(path))
        mask = binarise(levels)
        if not mask.any():
            self.empty.append(str(path))
        elif mask.all():
            self.full.append(str(path))
        return mask

    def as_dict(self) -> dict:
        return {"total": self.total, **{key: len(getattr(self, key)) for key in
                                         ("non_binary", "zero_one", "empty", "full")},
                "warnings": self.warnings()}


def audit_masks(paths: Iterable[str | Path]) -> MaskAudit:
    """Read every mask once and count the findings of :class:`MaskAudit`."""
    audit = MaskAudit()
    for path in paths:
        audit.add(path, read_mask_levels(path))
    return audit
