"""The attack comparison as files: ``attacks.md`` and ``attacks.csv`` from the rows of
:func:`medis.reporting.compare.attack_comparison`.

Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medis.attacks.targets import UNTARGETED
from medis.reporting.atomic import atomic_write_text
from medis.reporting.compare import ATTACK_COLUMNS, ATTACK_KEY, ENSEMBLE, TRANSFER_COLUMNS, attack_comparison
from medis.reporting.tables import cell, markdown_table, rows_csv
from medis.results.records import Record
from medis.results.values import is_missing, order_key

__all__ = ["ATTACKS_CSV", "ATTACKS_MD", "attack_comparison_csv", "attack_comparison_markdown", "format_eps",
           "write_attack_comparison", "write_attack_rows"]

ATTACKS_CSV = "attacks.csv"
ATTACKS_MD = "attacks.md"
_KNOWN_COLUMNS = frozenset(ATTACK_COLUMNS + TRANSFER_COLUMNS)


def format_eps(eps: Any) -> str:
    """``"8/255"`` when ``eps * 255`` is within 1e-6 of an integer, else the float (``"0.03"``);
    ``"none"`` for None."""
    if is_missing(eps):
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
    return f"{cell(miou, 3)} / {cell(asr, 1)}"


def _clean_line(rows: list[dict], targeted: bool) -> str:
    """The section's first line: the clean score (per eps when it differs) and the score's sense."""
    ensembles = [row for row in rows if row[ATTACK_KEY] == ENSEMBLE]
    values = {cell(row["clean_miou"], 3) for row in ensembles}
    if len(values) == 1:
        clean = values.pop()
    else:
        clean = ", ".join(f"{cell(row['clean_miou'], 3)} (eps {format_eps(row['eps'])})" for row in ensembles)
    sense = ("score toward the target, higher = stronger attack" if targeted
             else "mIoU with the ground truth, lower = stronger attack")
    return f"Clean score: {clean} ({sense}).\n"


def _section(title: str, rows: list[dict]) -> str:
    """One (by..., dataset, target) section: clean line and the attack x eps table."""
    eps_values = sorted({row["eps"] for row in rows}, key=order_key)
    attacks = list(dict.fromkeys(row[ATTACK_KEY] for row in rows if row[ATTACK_KEY] != ENSEMBLE)) + [ENSEMBLE]
    transfer = TRANSFER_COLUMNS[0] in rows[0]
    row_at = {(row[ATTACK_KEY], row["eps"]): row for row in rows}
    headers = ["attack"]
    for eps in eps_values:
        tag = f" (eps {format_eps(eps)})"
        headers += ["score / ASR %" + tag, "passes / image" + tag]
        if transfer:
            headers.append("transfer score / ASR %" + tag)
    body = []
    for attack in attacks:
        line = [attack]
        for eps in eps_values:
            row = row_at.get((attack, eps))
            if row is None:  # this attack was not run at this eps
                line += ["-"] * (3 if transfer else 2)
                continue
            line += [_pair(row["adv_miou"], row["asr"]), cell(_passes(row), 1)]
            if transfer:
                line.append(_pair(row["transfer_miou"], row["transfer_asr"]))
        body.append(line)
    targeted = rows[0]["target"] != UNTARGETED
    return f"## {title}\n\n" + _clean_line(rows, targeted) + "\n" + markdown_table(headers, body)


def attack_comparison_markdown(rows: Sequence[Mapping]) -> str:
    """The Markdown text of ``attacks.md`` from :func:`attack_comparison`'s rows.

    One section per (extra grouping keys such as ``job``, dataset, target), in row order: a first
    line with the clean score, then a table with one row per attack (``ensemble`` last) and, per
    eps, the columns "score / ASR %" (e.g. ``0.412 / 65.6``) and "passes / image" (mean forwards +
    backwards), plus "transfer score / ASR %" when the rows have transfer results. Eps is shown as
    ``k/255`` when it is a whole number of 255ths (see :func:`format_eps`).
    """
    out = [
        "# MedIS attack comparison\n",
        "Per attack, over the images it attacked: score = mean per-image worst case over the attack's "
        "losses (each loss's best admissible iterate, scored at full size; untargeted: lowest mIoU with the "
        "ground truth; targeted: highest score toward the target: the mIoU with it in paper mode, the least "
        "share reached of the target's two sides in clean mode); "
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


def write_attack_comparison(records: Iterable[Record | Mapping], out_dir: str | os.PathLike, *,
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
