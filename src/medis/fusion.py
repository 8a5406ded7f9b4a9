"""Parallel fusion: attack records -> ASR / distortion tables, per loss and fused.

Reproduces the tables of Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on
medical image segmentation", Multimedia Tools and Applications, 2023 (doi:10.1007/s11042-023-15575-8),
which give, per dataset and per target, the attack success rate (ASR, %) and the distortion (mean
step index of the first successful iterate) of every surrogate loss, and of their *parallel fusion*:
for each image, among the losses that succeeded, the one with the fewest steps is kept, ties broken
by the better metric (targeted: highest mIoU with the target; untargeted: lowest mIoU with the
ground truth).

The input is the flat table of *records* (one mapping per (image, target kind, loss), see
``ARCHITECTURE.md``, "Record"); everything here is a pure function of it, in plain Python (no
torch, no pandas, no Lightning/Hydra/W&B), so the same code fuses inside one run (a callback) and
across a multirun sweep (the report CLI).

Record keys read here:

- ``dataset``, ``image_id``, ``target``, ``loss``: identity; ``target == "untargeted"`` marks an
  untargeted attack, any other value (``"random"``, ``"white"``, ...) a targeted one.
- ``success`` (bool), ``steps`` (int, required when successful, ignored otherwise), ``metric``
  (float, required when successful; it breaks ties on steps).
- ``linf``, ``l2``, ``ssim``, ``psnr``: optional floats (a missing key, ``None`` or NaN all mean
  "not measured"); averaged over the successful / chosen records that carry them.
- ``eps``: optional; when any record carries it, it joins the grouping key (missing -> ``None``).
- any other key is ignored by the tables and kept in the records returned by
  :func:`choose_per_image`.

Values read back from Parquet or CSV are accepted: NumPy scalars, ``NaN`` for a missing value, an
integral float for ``steps``, ``"True"``/``"False"`` strings for ``success``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "FUSED_LOSS",
    "GROUP_KEYS",
    "NORM_KEYS",
    "REQUIRED_KEYS",
    "UNTARGETED",
    "choose_per_image",
    "fuse",
    "per_loss_table",
    "summary_table",
]

GROUP_KEYS: tuple[str, ...] = ("dataset", "target")
"""Grouping key of every table; ``"eps"`` is appended when any record carries it."""
EPS_KEY = "eps"
UNTARGETED = "untargeted"
FUSED_LOSS = "parallel fusion"
NORM_KEYS: tuple[str, ...] = ("linf", "l2", "ssim", "psnr")
REQUIRED_KEYS: tuple[str, ...] = ("dataset", "image_id", "target", "loss", "success", "steps", "metric")
_IDENTITY_KEYS = ("dataset", "image_id", "target", "loss")


# --------------------------------------------------------------------------------------------
# Normalised records
# --------------------------------------------------------------------------------------------


class _Rec:
    """One validated record: its group, identity, decision values and the original mapping."""

    __slots__ = ("group", "image_id", "loss", "success", "steps", "metric", "norms", "source")

    def __init__(self, group: tuple, image_id: Any, loss: str, success: bool, steps: int | None,
                 metric: float | None, norms: dict[str, float | None], source: Mapping) -> None:
        self.group = group
        self.image_id = image_id
        self.loss = loss
        self.success = success
        self.steps = steps
        self.metric = metric
        self.norms = norms
        self.source = source


def _is_missing(value: Any) -> bool:
    """``None`` or a float NaN (how Parquet/CSV readers write a missing value)."""
    if value is None:
        return True
    try:
        return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)
    except (TypeError, ValueError):
        return False


def _where(record: Mapping, index: int) -> str:
    parts = ", ".join(f"{key}={record.get(key, '?')!r}" for key in ("dataset", "image_id", "loss"))
    return f"record #{index} ({parts})"


def _as_bool(value: Any, record: Mapping, index: int) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
    elif not _is_missing(value):
        try:
            if value in (0, 1):  # bool, int, numpy.bool_, 0.0 / 1.0
                return bool(value)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"{_where(record, index)}: 'success' must be a bool, got {value!r}")


def _as_steps(value: Any, record: Mapping, index: int) -> int:
    if _is_missing(value) or isinstance(value, (bool, str)):
        raise ValueError(f"{_where(record, index)}: successful but 'steps' is {value!r}, not a step index")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{_where(record, index)}: 'steps' must be an int, got {value!r}") from None
    if not as_float.is_integer() or as_float < 0:
        raise ValueError(f"{_where(record, index)}: 'steps' must be a non-negative int, got {value!r}")
    return int(as_float)


def _as_float(value: Any, key: str, record: Mapping, index: int) -> float | None:
    if _is_missing(value):
        return None
    if isinstance(value, (bool, str)):
        raise ValueError(f"{_where(record, index)}: {key!r} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{_where(record, index)}: {key!r} must be a number, got {value!r}") from None


def _group_keys(records: Sequence[Mapping], by: Sequence[str]) -> tuple[str, ...]:
    keys = list(GROUP_KEYS)
    if any(EPS_KEY in record for record in records):
        keys.append(EPS_KEY)
    for key in by:
        if key in keys or key in ("image_id", "loss"):
            raise ValueError(f"by: {key!r} is already part of the grouping key or is not a group key")
        keys.append(key)
    return tuple(keys)


def _normalise(records: Iterable[Mapping], dedupe: bool, by: Sequence[str]) -> tuple[tuple[str, ...], list[_Rec]]:
    """Validate the records, drop or reject duplicates; returns the grouping key names and records."""
    if isinstance(records, Mapping):
        raise TypeError("records must be an iterable of mappings, not a single mapping")
    raw = list(records)
    keys = _group_keys(raw, tuple(by))
    extra = keys[len(GROUP_KEYS):]
    latest: dict[tuple, _Rec] = {}
    duplicates: list[tuple] = []
    for index, record in enumerate(raw):
        if not isinstance(record, Mapping):
            raise TypeError(f"record #{index} is a {type(record).__name__}, not a mapping")
        for key in REQUIRED_KEYS:
            if key not in record:
                raise ValueError(f"{_where(record, index)} is missing required key {key!r}")
        for key in _IDENTITY_KEYS:
            if _is_missing(record[key]):
                raise ValueError(f"{_where(record, index)}: {key!r} is {record[key]!r}")
        for key in ("dataset", "target", "loss"):
            if not isinstance(record[key], str):
                raise ValueError(f"{_where(record, index)}: {key!r} must be a str, got {record[key]!r}")
        success = _as_bool(record["success"], record, index)
        steps = _as_steps(record["steps"], record, index) if success else None
        metric = _as_float(record["metric"], "metric", record, index)
        if success and metric is None:
            raise ValueError(f"{_where(record, index)}: successful but 'metric' is {record['metric']!r}")
        norms = {key: _as_float(record.get(key), key, record, index) for key in NORM_KEYS}
        group = (record["dataset"], record["target"]) + tuple(
            None if _is_missing(record.get(key)) else record.get(key) for key in extra
        )
        rec = _Rec(group, record["image_id"], record["loss"], success, steps, metric, norms, record)
        ident = group + (rec.image_id, rec.loss)
        if ident in latest:
            duplicates.append(ident)
            latest.pop(ident)  # re-insert so the kept record sits where the last duplicate was
        latest[ident] = rec
    if duplicates and not dedupe:
        names = keys + ("image_id", "loss")
        shown = "; ".join(
            "(" + ", ".join(f"{name}={value!r}" for name, value in zip(names, ident)) + ")"
            for ident in list(dict.fromkeys(duplicates))[:5]
        )
        more = len(set(duplicates)) - 5
        raise ValueError(
            f"duplicate records (an image would be counted twice): {shown}"
            + (f" and {more} more" if more > 0 else "")
            + "; pass dedupe=True to keep the last one"
        )
    return keys, list(latest.values())


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _order(value: Any) -> tuple:
    """Total, deterministic sort key over mixed values: None, then numbers, then strings, then rest."""
    if value is None:
        return (0,)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (1, float(value), "")
    if isinstance(value, str):
        return (2, 0.0, value)
    return (3, 0.0, repr(value))


def _group_order(group: tuple) -> tuple:
    return tuple(_order(value) for value in group)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return math.fsum(present) / len(present) if present else None


def _by_group(recs: Iterable[_Rec]) -> dict[tuple, list[_Rec]]:
    groups: dict[tuple, list[_Rec]] = {}
    for rec in recs:
        groups.setdefault(rec.group, []).append(rec)
    return dict(sorted(groups.items(), key=lambda item: _group_order(item[0])))


def _row(keys: tuple[str, ...], group: tuple, loss: str, images: int, chosen: list[_Rec]) -> dict:
    """A table row from the successful (per loss) or chosen (fused) records of one group."""
    row: dict[str, Any] = dict(zip(keys, group))
    row["loss"] = loss
    row["images"] = images
    row["successes"] = len(chosen)
    row["asr"] = len(chosen) / images * 100.0 if images else None
    row["distortion"] = _mean(rec.steps for rec in chosen)
    for key in NORM_KEYS:
        row[key] = _mean(rec.norms[key] for rec in chosen)
    return row


def _choose(recs: list[_Rec]) -> dict[Any, _Rec]:
    """image_id -> winning record of one group: fewest steps, then better metric, then loss name."""
    best: dict[Any, _Rec] = {}
    best_key: dict[Any, tuple] = {}
    for rec in recs:
        if not rec.success:
            continue
        targeted = rec.group[1] != UNTARGETED
        key = (rec.steps, -rec.metric if targeted else rec.metric, rec.loss)
        if rec.image_id not in best or key < best_key[rec.image_id]:
            best[rec.image_id] = rec
            best_key[rec.image_id] = key
    return dict(sorted(best.items(), key=lambda item: _order(item[0])))


def _per_loss(keys: tuple[str, ...], recs: list[_Rec]) -> list[dict]:
    rows = []
    for group, members in _by_group(recs).items():
        by_loss: dict[str, list[_Rec]] = {}
        for rec in members:
            by_loss.setdefault(rec.loss, []).append(rec)
        for loss in sorted(by_loss):
            attacked = by_loss[loss]
            images = len({rec.image_id for rec in attacked})
            rows.append(_row(keys, group, loss, images, [rec for rec in attacked if rec.success]))
    return rows


def _fused(keys: tuple[str, ...], recs: list[_Rec]) -> list[dict]:
    rows = []
    for group, members in _by_group(recs).items():
        chosen = _choose(members)
        images = len({rec.image_id for rec in members})
        row = _row(keys, group, FUSED_LOSS, images, list(chosen.values()))
        row["chosen"] = {image_id: rec.loss for image_id, rec in chosen.items()}
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def per_loss_table(records: Iterable[Mapping], *, dedupe: bool = False, by: Sequence[str] = ()) -> list[dict]:
    """ASR and distortion of every loss separately (the paper's tables without fusion).

    Args:
        records: one mapping per (image, target kind, loss); see the module docstring.
        dedupe: keep the LAST of duplicate (group, image_id, loss) records instead of raising.
        by: extra record keys to group by (e.g. ``("mode",)`` across a sweep); missing -> None.

    Returns:
        One row per (dataset, target[, eps][, *by], loss), ordered by group then loss name:
        ``{"dataset", "target", ["eps",] "loss", "images", "successes", "asr", "distortion",
        "linf", "l2", "ssim", "psnr"}``. ``images`` counts the distinct images attacked with that
        loss in that group; ``asr = successes / images * 100``; ``distortion`` is the mean step
        index over the successes and the norms the means over the successes of the measured
        values (``None`` where there is nothing to average).

    Raises:
        ValueError: a record misses a required key or has an invalid value, or duplicates exist
            and ``dedupe`` is False.
    """
    keys, recs = _normalise(records, dedupe, by)
    return _per_loss(keys, recs)


def fuse(records: Iterable[Mapping], *, dedupe: bool = False, by: Sequence[str] = ()) -> list[dict]:
    """Parallel fusion of all losses, one row per group (the paper's tables with fusion).

    For each image the winner is, among the losses that succeeded on it, the one with the fewest
    steps; ties go to the better metric (targeted: highest mIoU with the target; untargeted:
    lowest mIoU with the ground truth), then to the alphabetically first loss name.

    Args:
        records: one mapping per (image, target kind, loss); see the module docstring.
        dedupe: keep the LAST of duplicate (group, image_id, loss) records instead of raising.
        by: extra record keys to group by; missing -> None.

    Returns:
        One row per (dataset, target[, eps][, *by]) in group order, with ``"loss": "parallel
        fusion"`` and the columns of :func:`per_loss_table`: ``images`` = distinct images attacked
        in the group by any loss, ``successes`` = images with at least one successful loss,
        ``asr = successes / images * 100``, ``distortion`` = mean of the per-image minimum steps,
        norms = means over the chosen records; plus ``"chosen": {image_id: loss}`` for the images
        with a success, ordered by image id.

    Raises:
        ValueError: as :func:`per_loss_table`.
    """
    keys, recs = _normalise(records, dedupe, by)
    return _fused(keys, recs)


def summary_table(records: Iterable[Mapping], *, dedupe: bool = False, by: Sequence[str] = ()) -> list[dict]:
    """Per-loss rows and the fused row of every group, in one table.

    Rows are ordered by group (dataset, target, eps, *by), then by loss name, with the group's
    ``"parallel fusion"`` row (see :func:`fuse`) last in its group.

    Args:
        records: one mapping per (image, target kind, loss); see the module docstring.
        dedupe: keep the LAST of duplicate (group, image_id, loss) records instead of raising.
        by: extra record keys to group by; missing -> None.

    Raises:
        ValueError: as :func:`per_loss_table`.
    """
    keys, recs = _normalise(records, dedupe, by)
    fused = {tuple(row[key] for key in keys): row for row in _fused(keys, recs)}
    rows: list[dict] = []
    current: tuple | None = None
    for row in _per_loss(keys, recs):
        group = tuple(row[key] for key in keys)
        if current is not None and group != current:
            rows.append(fused[current])
        current = group
        rows.append(row)
    if current is not None:
        rows.append(fused[current])
    return rows


def choose_per_image(
    records: Iterable[Mapping], *, dedupe: bool = False, by: Sequence[str] = ()
) -> dict[tuple, Mapping]:
    """The record that parallel fusion keeps for every image with at least one success.

    Args:
        records: one mapping per (image, target kind, loss); see the module docstring.
        dedupe: keep the LAST of duplicate (group, image_id, loss) records instead of raising.
        by: extra record keys to group by; missing -> None.

    Returns:
        ``(dataset, target, [eps,] [*by,] image_id) -> record``: the original mapping (extra keys
        such as ``"trajectory"`` included), ordered by group then image id. Images on which no
        loss succeeded are absent.

    Raises:
        ValueError: as :func:`per_loss_table`.
    """
    _, recs = _normalise(records, dedupe, by)
    out: dict[tuple, Mapping] = {}
    for group, members in _by_group(recs).items():
        for image_id, rec in _choose(members).items():
            out[group + (image_id,)] = rec.source
    return out
