"""Attack comparison: mIoU, ASR and cost of every attack, and of their per-image worst case.

Several attacks (MedIS, PGD, SegPGD, CosPGD, APGD, ASMA, DAG, ...) run on the same images are
compared on the same footing, per (dataset, target, eps): the mean clean mIoU, the mean mIoU
after the attack, the attack success rate and the forward / backward passes spent per image.
The last row of every group, ``ensemble``, is the per-image worst case over all attacks: for
each image the strongest attack is kept, as in the ensemble evaluation of SEA (Croce, Singh,
Hein, "Towards Reliable Evaluation and Fast Training of Robust Semantic Segmentation Models",
ECCV 2024): a model is only as robust as it is against the best attack on each image.

Record fields read here (:class:`medis.results.records.Record`; mappings are typed on the way in):

- ``attack``: the attack's name; ``None`` means ``"medis"``. A record of an ensemble run whose
  ``attack`` is ``"ensemble"`` is credited to the prefix of its qualified loss
  (``"apgd/masked_bce"`` -> ``"apgd"``).
- ``worst_metric``: the worst case of the record, its best admissible iterate scored at full size
  (without one, the attacker's best of ``trajectory``);
- ``trajectory`` (non-empty): the score after 0, 1, 2, ... updates; ``clean_metric`` the clean
  image's (``trajectory[0]`` where it is missing). The score is the mIoU with the ground truth when
  untargeted (the attacker wants it low); when targeted (the attacker wants it high) the mIoU with
  the target in paper mode, the least share reached of the target's two sides in clean mode
  (:mod:`medis.attacks.scoring`).
- ``success``, ``steps``, ``metric``: through :func:`medis.results.fusion.fuse`, which gives the ASR.
- ``forwards``, ``backwards``: the passes spent on the record (``None``: not counted).
- ``worst_transfer_metric``, ``worst_transfer_success`` (else ``transfer_metric``,
  ``transfer_success``): the worst-case image judged on another model.

Attacks are listed in the order they first appear in the records (an ensemble's member order).

Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medis.attacks.targets import UNTARGETED
from medis.reporting.tables import target_order
from medis.results.fusion import fuse
from medis.results.records import Record, as_records
from medis.results.values import is_missing, mean, order_key

__all__ = ["ATTACK_COLUMNS", "DEFAULT_ATTACK", "ENSEMBLE", "TRANSFER_COLUMNS", "attack_comparison", "has_attacks"]

ATTACK_KEY = "attack"
DEFAULT_ATTACK = "medis"
"""The attack a record without an ``attack`` key comes from."""
ENSEMBLE = "ensemble"
"""The ``attack`` of the per-image worst-case row of every group (reserved)."""
ATTACK_COLUMNS: tuple[str, ...] = (
    "dataset", "target", "eps", "attack", "images", "clean_miou", "adv_miou", "asr", "forwards", "backwards",
)
"""Columns of every row (``eps`` is ``None`` when the records have none)."""
TRANSFER_COLUMNS: tuple[str, ...] = ("transfer_miou", "transfer_asr")
"""Columns added to every row when any record carries a transfer result."""


# --------------------------------------------------------------------------------------------
# Record values
# --------------------------------------------------------------------------------------------


def _where(record: Record, index: int) -> str:
    parts = ", ".join(f"{key}={record[key]!r}" for key in ("dataset", "image_id", "target", "loss"))
    return f"record #{index} ({parts})"


def _attack_name(record: Record, index: int) -> str:
    """The attack a record is credited to (see the module docstring)."""
    name = record.attack or DEFAULT_ATTACK
    if name == ENSEMBLE:
        if "/" not in record.loss:
            raise ValueError(f"{_where(record, index)}: attack {ENSEMBLE!r} is reserved for the worst case over "
                             "attacks; an ensemble record needs a loss qualified as '<attack>/<loss>'")
        name = record.loss.split("/", 1)[0]
    return name


class _Entry:
    """The values of one record that the comparison needs, plus its group and attack."""

    __slots__ = ("group", "attack", "image_id", "clean", "low", "high", "forwards", "backwards",
                 "transfer", "transfer_success")

    def __init__(self, record: Record, index: int, by: Sequence[str]) -> None:
        scores = [value for value in record.trajectory if not math.isnan(value)]
        if not scores:
            raise ValueError(f"{_where(record, index)} has no trajectory (got {list(record.trajectory)!r}); the "
                             "attack comparison needs the score after every update, trajectory[0] being the clean "
                             "image's")
        first = record.clean_metric if record.clean_metric is not None else record.trajectory[0]
        self.clean = None if math.isnan(first) else first
        self.group: tuple = tuple(None if is_missing(record.get(key)) else record.get(key) for key in by) + (
            record.dataset, record.target, record.eps)
        self.attack = _attack_name(record, index)
        self.image_id = record.image_id
        self.forwards, self.backwards = record.forwards, record.backwards
        if record.worst_metric is not None:  # the worst case, scored at full size, and its own transfer verdict
            self.low = self.high = record.worst_metric
            self.transfer, self.transfer_success = record.worst_transfer_metric, record.worst_transfer_success
        else:
            self.low, self.high = min(scores), max(scores)
            self.transfer, self.transfer_success = record.transfer_metric, record.transfer_success


# --------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------


def _best(values: Iterable[float | None], targeted: bool) -> float | None:
    """The attacker's best of the present values: max when targeted, min when untargeted."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    return max(present) if targeted else min(present)


def _passes_per_image(images: dict[Any, list[_Entry]], key: str) -> float | None:
    """Mean over the images of the sum of their records' ``key`` pass counts; ``None`` unless
    every record carries the count (a mean over some of the images would mislead)."""
    counts = [[getattr(entry, key) for entry in members] for members in images.values()]
    if any(value is None for per_image in counts for value in per_image):
        return None
    return mean(float(sum(per_image)) for per_image in counts)


def _by_image(entries: list[_Entry]) -> dict[Any, list[_Entry]]:
    images: dict[Any, list[_Entry]] = {}
    for entry in entries:
        images.setdefault(entry.image_id, []).append(entry)
    return images


def _transfer_asr(images: dict[Any, list[_Entry]]) -> float | None:
    """% of the images with a transfer verdict on which some record transferred."""
    verdicts = [[e.transfer_success for e in members if e.transfer_success is not None] for members in images.values()]
    judged = [flags for flags in verdicts if flags]
    return sum(any(flags) for flags in judged) / len(judged) * 100.0 if judged else None


def _stats(entries: list[_Entry], targeted: bool, transfer: bool) -> dict[str, Any]:
    """images, clean/adv mIoU, passes (and transfer columns) of one attack (or all) in one group."""
    images = _by_image(entries)
    stats: dict[str, Any] = {
        "images": len(images),
        "clean_miou": mean(next((e.clean for e in members if e.clean is not None), None)
                            for members in images.values()),
        "adv_miou": mean(_best((e.high if targeted else e.low for e in members), targeted)
                          for members in images.values()),
        "forwards": _passes_per_image(images, "forwards"),
        "backwards": _passes_per_image(images, "backwards"),
    }
    if transfer:
        stats["transfer_miou"] = mean(_best((e.transfer for e in members), targeted) for members in images.values())
        stats["transfer_asr"] = _transfer_asr(images)
    return stats


def _qualified(record: Record, attack: str) -> Record:
    """A copy of the record with its attack set and its loss qualified as ``<attack>/<loss>``."""
    loss = record.loss if record.loss.startswith(attack + "/") else f"{attack}/{record.loss}"
    return dataclasses.replace(record, attack=attack, loss=loss)


def _fused_asr(records: list[Record], by: Sequence[str], per_attack: bool) -> dict[tuple, float | None]:
    """Parallel fusion's ASR keyed like the comparison's groups (+ attack when ``per_attack``)."""
    fuse_by = tuple(by) + ((ATTACK_KEY,) if per_attack else ())
    out = {}
    for row in fuse(records, by=fuse_by):
        key = tuple(row[name] for name in by) + (row["dataset"], row["target"], row.get("eps"))
        out[key + ((row[ATTACK_KEY],) if per_attack else ())] = row["asr"]
    return out


def _group_order(group: tuple, n_by: int) -> tuple:
    """by values, dataset, target (paper order), eps."""
    extra, (dataset, target, eps) = group[:n_by], group[n_by:]
    return tuple(order_key(v) for v in extra) + (str(dataset), target_order(target), order_key(eps))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def attack_comparison(records: Iterable[Record | Mapping], *, by: Sequence[str] = ()) -> list[dict]:
    """One row per (dataset, target, eps, attack), plus the ``ensemble`` row of every group.

    Per attack, over the distinct images it attacked in the group:

    - ``clean_miou``: mean of ``trajectory[0]`` (the clean score; taken from any record of the image);
    - ``adv_miou``: mean of the per-image best score: the min over the attack's records of their
      ``worst_metric`` (``min(trajectory)`` without one) when untargeted, the max when targeted;
    - ``asr``: % of images on which some record of the attack succeeded, i.e. exactly the ASR of
      :func:`medis.results.fusion.fuse` over the attack's records;
    - ``forwards`` / ``backwards``: mean over the images of the sum over the attack's records of
      the count; ``None`` unless every record of the row carries it;
    - only when some record carries ``transfer_metric`` or ``transfer_success``: ``transfer_miou``
      (mean per-image best ``transfer_metric``, in the same sense as ``adv_miou``) and
      ``transfer_asr`` (% of the images with a transfer verdict on which some record transferred).

    The ``ensemble`` row does the same over all the records of the group, whatever their attack:
    the per-image worst case over attacks (SEA, Croce et al., ECCV 2024), so its ASR is >= and its
    ``adv_miou`` <= (untargeted) / >= (targeted) every member's; its passes are the sum over all
    attacks. Images attacked by only some attacks count for those attacks (``images`` differ).

    Args:
        records: one mapping per (image, target kind, loss) (see the module docstring).
        by: extra record keys to group by, e.g. ``("job",)`` for :func:`medis.reporting.sweep.gather`
            records; they lead every row (missing -> ``None``).

    Returns:
        Rows with the keys ``*by`` then :data:`ATTACK_COLUMNS` (then :data:`TRANSFER_COLUMNS`),
        groups ordered by ``by`` values, dataset, target (registry order) and eps, attacks in order of
        first appearance, ``ensemble`` last in its group.

    Raises:
        ValueError: a record has no trajectory, claims the reserved attack ``ensemble`` without a
            qualified loss, or is rejected by :func:`medis.results.fusion.fuse` (missing key, bad value,
            duplicate (image, loss) within an attack).
    """
    by = tuple(by)
    raw = as_records(records)
    entries = [_Entry(record, index, by) for index, record in enumerate(raw)]
    qualified = [_qualified(record, entry.attack) for record, entry in zip(raw, entries)]
    member_asr = _fused_asr(qualified, by, per_attack=True)
    ensemble_asr = _fused_asr(qualified, by, per_attack=False)
    transfer = any(e.transfer is not None or e.transfer_success is not None for e in entries)
    groups: dict[tuple, list[_Entry]] = {}
    appearance: dict[str, int] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
        appearance.setdefault(entry.attack, len(appearance))
    rows = []
    for group in sorted(groups, key=lambda g: _group_order(g, len(by))):
        members = groups[group]
        targeted = group[len(by) + 1] != UNTARGETED
        head = dict(zip(by + ("dataset", "target", "eps"), group))
        attacks = sorted({e.attack for e in members}, key=appearance.__getitem__)
        for attack in attacks:
            stats = _stats([e for e in members if e.attack == attack], targeted, transfer)
            rows.append({**head, ATTACK_KEY: attack, **_ordered(stats, member_asr[group + (attack,)], transfer)})
        rows.append({**head, ATTACK_KEY: ENSEMBLE, **_ordered(_stats(members, targeted, transfer),
                                                               ensemble_asr[group], transfer)})
    return rows


def _ordered(stats: dict[str, Any], asr: float | None, transfer: bool) -> dict[str, Any]:
    """The statistics in column order, with the ASR slotted in."""
    columns = ATTACK_COLUMNS[4:] + (TRANSFER_COLUMNS if transfer else ())
    return {column: asr if column == "asr" else stats[column] for column in columns}


def has_attacks(records: Iterable[Record]) -> bool:
    """Whether any record names its attack."""
    return any(record.attack for record in records)
