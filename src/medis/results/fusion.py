"""Parallel fusion: attack records -> ASR / distortion tables, per loss and fused.

Reproduces the tables of Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on
medical image segmentation", Multimedia Tools and Applications, 2023 (doi:10.1007/s11042-023-15575-8),
which give, per dataset and per target, the attack success rate (ASR, %) and the distortion (mean
step index of the first successful iterate) of every surrogate loss, and of their *parallel fusion*:
for each image, among the losses that succeeded, the one with the fewest steps is kept, ties broken
by the better metric (targeted: highest mIoU with the target; untargeted: lowest mIoU with the
ground truth).

The input is the flat table of *records* (:class:`medis.results.records.Record`, one per (image, target
kind, loss); mappings are typed on the way in by :func:`medis.results.records.as_record`); everything here is
a pure function of it, in plain Python (no torch, no pandas, no Lightning/Hydra/W&B), so the same
code fuses inside one run (a callback) and across a multirun sweep (the report CLI).

Fields read here: ``dataset``, ``target`` (``untargeted`` marks an untargeted attack), ``image_id``,
``loss``, ``success``, ``steps``, ``metric`` (breaks ties on steps), the norms ``linf``, ``l2``,
``ssim``, ``psnr`` (``None``: not measured) and ``eps``, which joins the grouping key when any record
has one. Extra grouping keys (``by``) are read from the records' tags (e.g. a sweep's ``job``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medis.results.records import REQUIRED_KEYS, UNTARGETED, Record, as_records
from medis.results.values import is_missing, mean, order_key

__all__ = [
    "FUSED_LOSS",
    "GROUP_KEYS",
    "NORM_KEYS",
    "REQUIRED_KEYS",
    "UNTARGETED",
    "choose_per_image",
    "fuse",
    "per_loss_table",
    "representative",
    "summary_table",
    "winner",
]

GROUP_KEYS: tuple[str, ...] = ("dataset", "target")
"""Grouping key of every table; ``"eps"`` is appended when any record carries it."""
EPS_KEY = "eps"
FUSED_LOSS = "parallel fusion"
NORM_KEYS: tuple[str, ...] = ("linf", "l2", "ssim", "psnr")


# --------------------------------------------------------------------------------------------
# Typed and grouped records
# --------------------------------------------------------------------------------------------


class _Rec:
    """A record with its group."""

    __slots__ = ("group", "record")

    def __init__(self, group: tuple, record: Record) -> None:
        self.group = group
        self.record = record


def _group_keys(records: Sequence[Record], by: Sequence[str]) -> tuple[str, ...]:
    keys = list(GROUP_KEYS)
    if any(record.eps is not None for record in records):
        keys.append(EPS_KEY)
    for key in by:
        if key in keys or key in ("image_id", "loss"):
            raise ValueError(f"by: {key!r} is already part of the grouping key or is not a group key")
        keys.append(key)
    return tuple(keys)


def _normalise(records: Iterable[Record | Mapping], dedupe: bool, by: Sequence[str]) -> tuple[tuple[str, ...], list[_Rec]]:
    """Type the records, drop or reject duplicates; returns the grouping key names and records."""
    typed = as_records(records)
    keys = _group_keys(typed, tuple(by))
    extra = keys[len(GROUP_KEYS):]
    latest: dict[tuple, _Rec] = {}
    duplicates: list[tuple] = []
    for record in typed:
        group = (record.dataset, record.target) + tuple(
            None if is_missing(record.get(key)) else record.get(key) for key in extra)
        ident = group + (record.image_id, record.loss)
        if ident in latest:
            duplicates.append(ident)
            latest.pop(ident)  # re-insert so the kept record sits where the last duplicate was
        latest[ident] = _Rec(group, record)
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


def _group_order(group: tuple) -> tuple:
    return tuple(order_key(value) for value in group)


def _by_group(recs: Iterable[_Rec]) -> dict[tuple, list[Record]]:
    groups: dict[tuple, list[Record]] = {}
    for rec in recs:
        groups.setdefault(rec.group, []).append(rec.record)
    return dict(sorted(groups.items(), key=lambda item: _group_order(item[0])))


def _row(keys: tuple[str, ...], group: tuple, loss: str, images: int, chosen: list[Record],
         set_aside: int = 0, pruned: int = 0, real: list[bool | None] | None = None) -> dict:
    """A table row from the successful (per loss) or chosen (fused) records of one group.

    ``real``: per attacked image (per loss: per record), whether some adversarial image succeeded
    through the real pipeline (``None``: not judged)."""
    row: dict[str, Any] = dict(zip(keys, group))
    row["loss"] = loss
    row["images"] = images
    row["successes"] = len(chosen)
    row["asr"] = len(chosen) / images * 100.0 if images else None
    row["distortion"] = mean(record.steps for record in chosen)
    for key in NORM_KEYS:
        row[key] = mean(getattr(record, key) for record in chosen)
    row["set_aside"] = set_aside
    row["pruned"] = pruned
    row["at_first"] = sum(record.steps == _first_index(record) for record in chosen)
    judged = [flag for flag in real or [] if flag is not None]
    row["real_asr"] = sum(judged) / len(judged) * 100.0 if judged else None
    return row


def _first_index(record: Record) -> int:
    """The distortion of a success at the first record: 1 in paper mode, 0 in clean mode."""
    return 1 if record.mode == "paper" else 0


def _rank(record: Record) -> tuple:
    """Parallel fusion's order among successes: fewest steps, then the better metric, then the loss."""
    return (record.steps, -record.metric if record.targeted else record.metric, record.loss)


def winner(records: Iterable[Record]) -> Record | None:
    """The record parallel fusion keeps among one image's records (one group): among the successes,
    the fewest steps, then the better metric (targeted: highest; untargeted: lowest), then the first
    loss name; ``None`` when no record succeeded."""
    successes = [record for record in records if record.success]
    return min(successes, key=_rank) if successes else None


def representative(records: Iterable[Record]) -> Record:
    """The record that stands for one image in a gallery: the :func:`winner`, or, when no loss
    succeeded, the record with the attacker's best final metric (ties: the first loss name).

    Raises:
        ValueError: ``records`` is empty.
    """
    records = list(records)
    if not records:
        raise ValueError("representative needs at least one record")
    best = winner(records)
    if best is not None:
        return best
    return min(records, key=lambda r: (-r.metric if r.targeted else r.metric, r.loss))


def _choose(records: list[Record]) -> dict[Any, Record]:
    """image_id -> winning record of one group (:func:`winner`), ordered by image id."""
    by_image: dict[Any, list[Record]] = {}
    for record in records:
        by_image.setdefault(record.image_id, []).append(record)
    chosen = {image_id: winner(members) for image_id, members in by_image.items()}
    return dict(sorted(((k, v) for k, v in chosen.items() if v is not None), key=lambda item: order_key(item[0])))


def _per_loss(keys: tuple[str, ...], recs: list[_Rec]) -> list[dict]:
    rows = []
    for group, members in _by_group(recs).items():
        by_loss: dict[str, list[Record]] = {}
        for record in members:
            by_loss.setdefault(record.loss, []).append(record)
        for loss in sorted(by_loss):
            attacked = [record for record in by_loss[loss] if not (record.set_aside or record.pruned)]
            images = len({record.image_id for record in attacked})
            aside = len({record.image_id for record in by_loss[loss] if record.set_aside})
            pruned = sum(record.pruned for record in by_loss[loss])
            rows.append(_row(keys, group, loss, images, [record for record in attacked if record.success], aside,
                             pruned, [record.real_success for record in attacked]))
    return rows


def _fused(keys: tuple[str, ...], recs: list[_Rec]) -> list[dict]:
    rows = []
    for group, members in _by_group(recs).items():
        chosen = _choose(members)
        attacked: dict[Any, list[Record]] = {}
        for record in members:
            if not record.set_aside:
                attacked.setdefault(record.image_id, []).append(record)
        aside = len({record.image_id for record in members} - set(attacked))
        real = [_any_real(records) for records in attacked.values()]
        row = _row(keys, group, FUSED_LOSS, len(attacked), list(chosen.values()), aside, 0, real)
        row["chosen"] = {image_id: record.loss for image_id, record in chosen.items()}
        rows.append(row)
    return rows


def _any_real(records: list[Record]) -> bool | None:
    """Whether some record of an image succeeded through the real pipeline (``None``: none was judged)."""
    flags = [record.real_success for record in records if record.real_success is not None]
    return any(flags) if flags else None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def per_loss_table(records: Iterable[Record | Mapping], *, dedupe: bool = False, by: Sequence[str] = ()) -> list[dict]:
    """ASR and distortion of every loss separately (the paper's tables without fusion).

    Args:
        records: one record per (image, target kind, loss); see the module docstring.
        dedupe: keep the LAST of duplicate (group, image_id, loss) records instead of raising.
        by: extra record keys to group by (e.g. ``("mode",)`` across a sweep); missing -> None.

    Returns:
        One row per (dataset, target[, eps][, *by], loss), ordered by group then loss name:
        ``{"dataset", "target", ["eps",] "loss", "images", "successes", "asr", "distortion",
        "linf", "l2", "ssim", "psnr", "set_aside", "pruned", "at_first", "real_asr"}``. ``images``
        counts the distinct images attacked with that loss in that group: records set aside (the
        clean prediction already met the success rule) or pruned by ``fusion_only`` (stopped before
        they could finish) are not attacks and are counted in ``set_aside`` and ``pruned`` instead;
        ``asr = successes / images * 100``; ``distortion`` is the mean step index over the
        successes and the norms the means over the successes of the measured values (``None``
        where there is nothing to average); ``at_first``: successes at the first record (before
        any update in paper mode; after a random start in clean mode); ``real_asr``: % of the
        attacked records whose chosen image also succeeds through the real pipeline (``None``
        when not judged).

    Raises:
        ValueError: a record misses a required key or has an invalid value, or duplicates exist
            and ``dedupe`` is False.
    """
    keys, recs = _normalise(records, dedupe, by)
    return _per_loss(keys, recs)


def fuse(records: Iterable[Record | Mapping], *, dedupe: bool = False, by: Sequence[str] = ()) -> list[dict]:
    """Parallel fusion of all losses, one row per group (the paper's tables with fusion).

    For each image the winner is, among the losses that succeeded on it, the one with the fewest
    steps; ties go to the better metric (targeted: highest mIoU with the target; untargeted:
    lowest mIoU with the ground truth), then to the alphabetically first loss name.

    Args:
        records: one record per (image, target kind, loss); see the module docstring.
        dedupe: keep the LAST of duplicate (group, image_id, loss) records instead of raising.
        by: extra record keys to group by; missing -> None.

    Returns:
        One row per (dataset, target[, eps][, *by]) in group order, with ``"loss": "parallel
        fusion"`` and the columns of :func:`per_loss_table`: ``images`` = distinct images attacked
        in the group by any loss (``set_aside``: images every loss set aside), ``successes`` =
        images with at least one successful loss, ``asr = successes / images * 100``,
        ``distortion`` = mean of the per-image minimum steps, norms = means over the chosen
        records, ``real_asr`` = % of the attacked images with some record that succeeds through the
        real pipeline; plus ``"chosen": {image_id: loss}`` for the images with a success, ordered
        by image id.

    Raises:
        ValueError: as :func:`per_loss_table`.
    """
    keys, recs = _normalise(records, dedupe, by)
    return _fused(keys, recs)


def summary_table(records: Iterable[Record | Mapping], *, dedupe: bool = False, by: Sequence[str] = ()) -> list[dict]:
    """Per-loss rows and the fused row of every group, in one table.

    Rows are ordered by group (dataset, target, eps, *by), then by loss name, with the group's
    ``"parallel fusion"`` row (see :func:`fuse`) last in its group.

    Args:
        records: one record per (image, target kind, loss); see the module docstring.
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
    records: Iterable[Record | Mapping], *, dedupe: bool = False, by: Sequence[str] = ()
) -> dict[tuple, Record]:
    """The record that parallel fusion keeps for every image with at least one success.

    Args:
        records: one record per (image, target kind, loss); see the module docstring.
        dedupe: keep the LAST of duplicate (group, image_id, loss) records instead of raising.
        by: extra record keys to group by; missing -> None.

    Returns:
        ``(dataset, target, [eps,] [*by,] image_id) -> record`` (the typed record, tags included),
        ordered by group then image id. Images on which no loss succeeded are absent.

    Raises:
        ValueError: as :func:`per_loss_table`.
    """
    _, recs = _normalise(records, dedupe, by)
    out: dict[tuple, Record] = {}
    for group, members in _by_group(recs).items():
        for image_id, record in _choose(members).items():
            out[group + (image_id,)] = record
    return out
