"""Attack comparison: mIoU, ASR and cost of every attack, and of their per-image worst case.

Several attacks (MedIS, PGD, SegPGD, CosPGD, APGD, ASMA, DAG, ...) run on the same images are
compared on the same footing, per (dataset, target, eps): the mean clean mIoU, the mean mIoU
after the attack, the attack success rate and the forward / backward passes spent per image.
The last row of every group, ``ensemble``, is the per-image worst case over all attacks: for
each image the strongest attack is kept, as in the ensemble evaluation of SEA (Croce, Singh,
Hein, "Towards Reliable Evaluation and Fast Training of Robust Semantic Segmentation Models",
ECCV 2024): a model is only as robust as it is against the best attack on each image.

Record keys read here (see :mod:`medis.fusion` for the common ones):

- ``attack``: the attack's name; missing, ``None`` or ``""`` means ``"medis"``. A record of an
  ensemble run whose ``attack`` is ``"ensemble"`` is credited to the prefix of its qualified
  loss (``"apgd/masked_bce"`` -> ``"apgd"``).
- ``trajectory`` (required, non-empty): the score after 0, 1, 2, ... updates, ``trajectory[0]``
  being the clean image's. The score is the mIoU with the ground truth when untargeted (the
  attacker wants it low), with the target when targeted (the attacker wants it high).
- ``success``, ``steps``, ``metric``: through :func:`medis.fusion.fuse`, which gives the ASR.
- ``forwards``, ``backwards`` (optional ints): the passes spent on the record.
- ``transfer_metric`` (optional float), ``transfer_success`` (optional bool): the adversarial
  image judged on another model (black-box transfer).

Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medis.fusion import UNTARGETED, _is_missing, _mean, _order, fuse
from medis.reporting.atomic import atomic_write_text
from medis.reporting.summary import _fmt, _target_order, markdown_table, rows_csv

__all__ = [
    "ATTACKS_CSV",
    "ATTACKS_MD",
    "ATTACK_COLUMNS",
    "ATTACK_ORDER",
    "DEFAULT_ATTACK",
    "ENSEMBLE",
    "TRANSFER_COLUMNS",
    "attack_comparison",
    "attack_comparison_csv",
    "attack_comparison_markdown",
    "format_eps",
    "has_attacks",
    "write_attack_comparison",
    "write_attack_rows",
]

ATTACK_KEY = "attack"
DEFAULT_ATTACK = "medis"
"""The attack a record without an ``attack`` key comes from."""
ENSEMBLE = "ensemble"
"""The ``attack`` of the per-image worst-case row of every group (reserved)."""
ATTACK_ORDER: tuple[str, ...] = ("medis", "pgd", "segpgd", "cospgd", "apgd", "asma", "dag")
"""Row order of the attacks in a group; other attacks follow alphabetically, ``ensemble`` last."""
ATTACK_COLUMNS: tuple[str, ...] = (
    "dataset", "target", "eps", "attack", "images", "clean_miou", "adv_miou", "asr", "forwards", "backwards",
)
"""Columns of every row (``eps`` is ``None`` when the records have none)."""
TRANSFER_COLUMNS: tuple[str, ...] = ("transfer_miou", "transfer_asr")
"""Columns added to every row when any record carries a transfer result."""
ATTACKS_CSV = "attacks.csv"
ATTACKS_MD = "attacks.md"
_KNOWN_COLUMNS = frozenset(ATTACK_COLUMNS + TRANSFER_COLUMNS)


# --------------------------------------------------------------------------------------------
# Record values
# --------------------------------------------------------------------------------------------


def _absent(value: Any) -> bool:
    """Missing (:func:`medis.fusion._is_missing`) or an empty string (an empty CSV field)."""
    return _is_missing(value) or (isinstance(value, str) and not value.strip())


def _where(record: Mapping, index: int) -> str:
    parts = ", ".join(f"{key}={record.get(key, '?')!r}" for key in ("dataset", "image_id", "target", "loss"))
    return f"record #{index} ({parts})"


def _attack_name(record: Mapping, index: int) -> str:
    """The attack a record is credited to (see the module docstring)."""
    name = record.get(ATTACK_KEY)
    if _absent(name):
        return DEFAULT_ATTACK
    name = str(name)
    if name == ENSEMBLE:
        loss = str(record.get("loss", ""))
        if "/" not in loss:
            raise ValueError(f"{_where(record, index)}: attack {ENSEMBLE!r} is reserved for the worst case over "
                             "attacks; an ensemble record needs a loss qualified as '<attack>/<loss>'")
        name = loss.split("/", 1)[0]
    return name


def _trajectory(record: Mapping, index: int) -> tuple[float | None, list[float]]:
    """The record's clean score (``None`` if NaN) and its scores without NaN; ValueError when none."""
    raw = record.get("trajectory")
    values = [] if _is_missing(raw) else [math.nan if _is_missing(value) else float(value) for value in raw]
    present = [value for value in values if not math.isnan(value)]
    if not present:
        raise ValueError(f"{_where(record, index)} has no trajectory (got {raw!r}); the attack comparison "
                         "needs the score after every update, trajectory[0] being the clean image's")
    return (None if math.isnan(values[0]) else values[0]), present


def _count(record: Mapping, key: str) -> int | None:
    value = record.get(key)
    return None if _absent(value) else int(float(value))


def _number(record: Mapping, key: str) -> float | None:
    value = record.get(key)
    return None if _absent(value) else float(value)


def _flag(record: Mapping, key: str) -> bool | None:
    value = record.get(key)
    if _absent(value):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


class _Entry:
    """The values of one record that the comparison needs, plus its group and attack."""

    __slots__ = ("group", "attack", "image_id", "clean", "low", "high", "forwards", "backwards",
                 "transfer", "transfer_success")

    def __init__(self, record: Mapping, index: int, by: Sequence[str]) -> None:
        self.clean, scores = _trajectory(record, index)
        eps = record.get("eps")
        self.group: tuple = tuple(None if _is_missing(record.get(key)) else record.get(key) for key in by) + (
            record.get("dataset"), record.get("target"), None if _is_missing(eps) else eps)
        self.attack = _attack_name(record, index)
        self.image_id = record.get("image_id")
        self.low, self.high = min(scores), max(scores)
        self.forwards, self.backwards = _count(record, "forwards"), _count(record, "backwards")
        self.transfer = _number(record, "transfer_metric")
        self.transfer_success = _flag(record, "transfer_success")


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
    return _mean(float(sum(per_image)) for per_image in counts)


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
        "clean_miou": _mean(next((e.clean for e in members if e.clean is not None), None)
                            for members in images.values()),
        "adv_miou": _mean(_best((e.high if targeted else e.low for e in members), targeted)
                          for members in images.values()),
        "forwards": _passes_per_image(images, "forwards"),
        "backwards": _passes_per_image(images, "backwards"),
    }
    if transfer:
        stats["transfer_miou"] = _mean(_best((e.transfer for e in members), targeted) for members in images.values())
        stats["transfer_asr"] = _transfer_asr(images)
    return stats


def _qualified(record: Mapping, attack: str) -> dict:
    """A copy of the record with its attack set and its loss qualified as ``<attack>/<loss>``."""
    copy = dict(record)
    copy[ATTACK_KEY] = attack
    loss = copy.get("loss")
    if isinstance(loss, str) and not loss.startswith(attack + "/"):  # anything else: fuse rejects it
        copy["loss"] = f"{attack}/{loss}"
    return copy


def _fused_asr(records: list[dict], by: Sequence[str], per_attack: bool) -> dict[tuple, float | None]:
    """Parallel fusion's ASR keyed like the comparison's groups (+ attack when ``per_attack``)."""
    fuse_by = tuple(by) + ((ATTACK_KEY,) if per_attack else ())
    out = {}
    for row in fuse(records, by=fuse_by):
        key = tuple(row[name] for name in by) + (row["dataset"], row["target"], row.get("eps"))
        out[key + ((row[ATTACK_KEY],) if per_attack else ())] = row["asr"]
    return out


def _attack_order(attack: str) -> tuple:
    if attack in ATTACK_ORDER:
        return (0, ATTACK_ORDER.index(attack), "")
    return (1, 0, attack)


def _group_order(group: tuple, n_by: int) -> tuple:
    """by values, dataset, target (paper order), eps."""
    extra, (dataset, target, eps) = group[:n_by], group[n_by:]
    return tuple(_order(v) for v in extra) + (str(dataset), _target_order(target), _order(eps))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def attack_comparison(records: Iterable[Mapping], *, by: Sequence[str] = ()) -> list[dict]:
    """One row per (dataset, target, eps, attack), plus the ``ensemble`` row of every group.

    Per attack, over the distinct images it attacked in the group:

    - ``clean_miou``: mean of ``trajectory[0]`` (the clean score; taken from any record of the image);
    - ``adv_miou``: mean of the per-image best score: the min over the attack's records of
      ``min(trajectory)`` when untargeted, the max of ``max(trajectory)`` when targeted;
    - ``asr``: % of images on which some record of the attack succeeded, i.e. exactly the ASR of
      :func:`medis.fusion.fuse` over the attack's records;
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
        groups ordered by ``by`` values, dataset, target (paper order) and eps, attacks by
        :data:`ATTACK_ORDER` then name, ``ensemble`` last in its group.

    Raises:
        ValueError: a record has no trajectory, claims the reserved attack ``ensemble`` without a
            qualified loss, or is rejected by :func:`medis.fusion.fuse` (missing key, bad value,
            duplicate (image, loss) within an attack).
    """
    if isinstance(records, Mapping):
        raise TypeError("records must be an iterable of mappings, not a single mapping")
    by = tuple(by)
    raw = list(records)
    entries = [_Entry(record, index, by) for index, record in enumerate(raw)]
    qualified = [_qualified(record, entry.attack) for record, entry in zip(raw, entries)]
    member_asr = _fused_asr(qualified, by, per_attack=True)
    ensemble_asr = _fused_asr(qualified, by, per_attack=False)
    transfer = any(e.transfer is not None or e.transfer_success is not None for e in entries)
    groups: dict[tuple, list[_Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
    rows = []
    for group in sorted(groups, key=lambda g: _group_order(g, len(by))):
        members = groups[group]
        targeted = group[len(by) + 1] != UNTARGETED
        head = dict(zip(by + ("dataset", "target", "eps"), group))
        attacks = sorted({e.attack for e in members}, key=_attack_order)
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


def has_attacks(records: Iterable[Mapping]) -> bool:
    """Whether any record names its attack (an ``attack`` value that is not None, NaN or empty)."""
    return any(not _absent(record.get(ATTACK_KEY)) for record in records)


def format_eps(eps: Any) -> str:
    """``"8/255"`` when ``eps * 255`` is within 1e-6 of an integer, else the float (``"0.03"``);
    ``"none"`` for None."""
    if _is_missing(eps):
        return "none"
    value = float(eps)
    scaled = value * 255.0
    if abs(scaled - round(scaled)) <= 1e-6:
        return f"{int(round(scaled))}/255"
    return f"{value:g}"


def _extra_keys(rows: Sequence[Mapping]) -> list[str]:
    """The grouping keys of the rows beyond dataset/target/eps (e.g. ``job``), in row order."""
    return [key for key in rows[0] if key not in _KNOWN_COLUMNS] if rows else []


def _passes(row: Mapping) -> float | None:
    if row["forwards"] is None or row["backwards"] is None:
        return None
    return row["forwards"] + row["backwards"]


def _pair(miou: Any, asr: Any) -> str:
    return f"{_fmt(miou, 3)} / {_fmt(asr, 1)}"


def _clean_line(rows: list[dict], targeted: bool) -> str:
    """The section's first line: the clean mIoU (per eps when it differs) and the score's sense."""
    ensembles = [row for row in rows if row[ATTACK_KEY] == ENSEMBLE]
    values = {_fmt(row["clean_miou"], 3) for row in ensembles}
    if len(values) == 1:
        clean = values.pop()
    else:
        clean = ", ".join(f"{_fmt(row['clean_miou'], 3)} (eps {format_eps(row['eps'])})" for row in ensembles)
    sense = ("mIoU with the target, higher = stronger attack" if targeted
             else "mIoU with the ground truth, lower = stronger attack")
    return f"Clean mIoU: {clean} ({sense}).\n"


def _section(title: str, rows: list[dict]) -> str:
    """One (by..., dataset, target) section: clean line and the attack x eps table."""
    eps_values = sorted({row["eps"] for row in rows}, key=_order)
    attacks = sorted({row[ATTACK_KEY] for row in rows if row[ATTACK_KEY] != ENSEMBLE}, key=_attack_order) + [ENSEMBLE]
    transfer = TRANSFER_COLUMNS[0] in rows[0]
    cell = {(row[ATTACK_KEY], row["eps"]): row for row in rows}
    headers = ["attack"]
    for eps in eps_values:
        tag = f" (eps {format_eps(eps)})"
        headers += ["mIoU / ASR %" + tag, "passes / image" + tag]
        if transfer:
            headers.append("transfer mIoU / ASR %" + tag)
    body = []
    for attack in attacks:
        line = [attack]
        for eps in eps_values:
            row = cell.get((attack, eps))
            if row is None:  # this attack was not run at this eps
                line += ["-"] * (3 if transfer else 2)
                continue
            line += [_pair(row["adv_miou"], row["asr"]), _fmt(_passes(row), 1)]
            if transfer:
                line.append(_pair(row["transfer_miou"], row["transfer_asr"]))
        body.append(line)
    targeted = rows[0]["target"] != UNTARGETED
    return f"## {title}\n\n" + _clean_line(rows, targeted) + "\n" + markdown_table(headers, body)


def attack_comparison_markdown(rows: Sequence[Mapping]) -> str:
    """The Markdown text of ``attacks.md`` from :func:`attack_comparison`'s rows.

    One section per (extra grouping keys such as ``job``, dataset, target), in row order: a first
    line with the clean mIoU, then a table with one row per attack (``ensemble`` last) and, per
    eps, the columns "mIoU / ASR %" (e.g. ``0.412 / 65.6``) and "passes / image" (mean forwards +
    backwards), plus "transfer mIoU / ASR %" when the rows have transfer results. Eps is shown as
    ``k/255`` when it is a whole number of 255ths (see :func:`format_eps`).
    """
    out = [
        "# MedIS attack comparison\n",
        "Per attack, over the images it attacked: mIoU = mean per-image best score over the attack's "
        "losses (untargeted: lowest mIoU with the ground truth; targeted: highest mIoU with the target); "
        "ASR % = images with some successful loss / images x 100; passes / image = mean forward + backward "
        "passes. `ensemble` = the per-image worst case over all attacks (Croce, Singh, Hein, SEA, ECCV 2024). "
        "`-`: not run or nothing to average.\n",
    ]
    if not rows:
        out.append("No records.\n")
        return "\n".join(out)
    extra = _extra_keys(rows)
    sections: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(row[name] for name in extra) + (row["dataset"], row["target"])
        sections.setdefault(key, []).append(dict(row))
    for key, members in sections.items():
        labels = [f"{name}: {value if value not in (None, '') else '-'}" for name, value in zip(extra, key)]
        out.append(_section(", ".join([str(key[-2]), str(key[-1])] + labels), members))
    return "\n".join(out)


def attack_comparison_csv(rows: Sequence[Mapping]) -> str:
    """The CSV text of ``attacks.csv``: the extra grouping keys, :data:`ATTACK_COLUMNS`, and
    :data:`TRANSFER_COLUMNS` when the rows have them."""
    transfer = bool(rows) and TRANSFER_COLUMNS[0] in rows[0]
    return rows_csv(rows, _extra_keys(rows) + list(ATTACK_COLUMNS) + (list(TRANSFER_COLUMNS) if transfer else []))


def write_attack_rows(rows: Sequence[Mapping], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write :func:`attack_comparison`'s rows to ``out_dir/attacks.csv`` and ``out_dir/attacks.md``
    (atomically; the folder is created if missing); returns ``(csv_path, md_path)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / ATTACKS_CSV, out / ATTACKS_MD
    atomic_write_text(csv_path, attack_comparison_csv(rows))
    atomic_write_text(md_path, attack_comparison_markdown(rows))
    return csv_path, md_path


def write_attack_comparison(records: Iterable[Mapping], out_dir: str | os.PathLike, *,
                            by: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``out_dir/attacks.csv`` and ``out_dir/attacks.md`` (atomically).

    Args:
        records: one mapping per (image, target kind, loss).
        out_dir: the output folder (created if missing).
        by: extra record keys to group by (see :func:`attack_comparison`).

    Returns:
        ``(csv_path, md_path)``.

    Raises:
        ValueError: as :func:`attack_comparison`; nothing is written then.
    """
    return write_attack_rows(attack_comparison(records, by=by), out_dir)
