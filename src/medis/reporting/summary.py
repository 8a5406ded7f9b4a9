"""Summary tables of an attack run: ``summary.csv`` and ``summary.md`` in the paper's layout.

Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on medical image
segmentation", Multimedia Tools and Applications, 2023 (doi:10.1007/s11042-023-15575-8) report,
per dataset and per target, the attack success rate (ASR, %) and the distortion (mean step index
of the first successful iterate) of every surrogate loss, with and without *parallel fusion*. The
numbers come from :func:`medis.results.fusion.summary_table`; this module only lays them out:

- ``summary.csv``: every row of :func:`summary_rows` (one per dataset, target, [eps,] loss, plus
  the fused row of each group), machine readable;
- ``summary.md``: one Markdown table per dataset (and eps when the records carry one) whose rows
  are the losses and a final ``parallel fusion`` row, and whose columns are, per target, "ASR %",
  "distortion" and, when the adversarial images were judged through the real pipeline (8-bit
  image, the loaders' resize), "real ASR %"; below it, per target, the images attacked, those set
  aside (clean mode: the clean prediction already met the success rule), the successes at the
  first record, and the mean perturbation size (L∞ in 1/255 units, L2, SSIM, PSNR) of the examples
  parallel fusion keeps.

Both files are written atomically (temporary file in the output folder, then ``os.replace``).
Pure Python: no pandas, no Lightning/Hydra/W&B.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medis.reporting.atomic import atomic_write_text
from medis.reporting.tables import cell, markdown_table, rows_csv, target_order
from medis.results.fusion import FUSED_LOSS, summary_table
from medis.results.records import Record

__all__ = [
    "SUMMARY_COLUMNS",
    "summary_markdown",
    "summary_rows",
    "write_summary",
]

SUMMARY_COLUMNS: tuple[str, ...] = (
    "dataset", "target", "eps", "loss", "images", "set_aside", "pruned", "successes", "asr", "distortion", "at_first",
    "real_asr", "linf", "l2", "ssim", "psnr",
)
"""Columns of ``summary.csv``; ``eps`` only when the records carry one."""
EPS_KEY = "eps"


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def summary_rows(records: Iterable[Record | Mapping], *, dedupe: bool = False) -> list[dict]:
    """The rows of :func:`medis.results.fusion.summary_table`, each with ``dataset``, ``target`` and ``loss``.

    Eps is a grouping column (``"eps"``) only when some record carries an eps value.

    Args:
        records: one record per (image, target kind, loss) (:class:`medis.results.records.Record`).
        dedupe: keep the last of duplicate records instead of raising (see :mod:`medis.results.fusion`).

    Returns:
        Per group (dataset, target[, eps]) the per-loss rows by loss name, then the
        ``"parallel fusion"`` row (which also has ``"chosen": {image_id: loss}``). Keys:
        ``dataset, target, [eps,] loss, images, successes, asr, distortion, linf, l2, ssim, psnr``.

    Raises:
        ValueError: as :func:`medis.results.fusion.summary_table` (missing keys, bad values, duplicates).
    """
    return summary_table(records, dedupe=dedupe)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _eps_text(eps: Any) -> str:
    if eps is None:
        return "eps not set"
    try:
        value = float(eps)
    except (TypeError, ValueError):
        return f"eps = {eps}"
    return f"eps = {value:g} ({value * 255:.4g}/255)"


def _section(title: str, rows: list[dict]) -> str:
    """One dataset (and eps) section: heading, the loss x target table, the per-target lines."""
    targets = sorted({row["target"] for row in rows}, key=target_order)
    losses = sorted({row["loss"] for row in rows if row["loss"] != FUSED_LOSS}) + [FUSED_LOSS]
    row_at = {(row["target"], row["loss"]): row for row in rows}
    real = any(row.get("real_asr") is not None for row in rows)
    columns = [("ASR %", "asr", 1), ("distortion", "distortion", 2)] + ([("real ASR %", "real_asr", 1)] if real else [])
    headers = ["loss"] + [f"{target} {name}" for target in targets for name, _, _ in columns]
    body = []
    for loss in losses:
        line = [loss]
        for target in targets:
            row = row_at.get((target, loss))
            line += ["-"] * len(columns) if row is None else [cell(row[key], digits) for _, key, digits in columns]
        body.append(line)
    notes = [_fused_note(target, row_at[(target, FUSED_LOSS)]) for target in targets
             if (target, FUSED_LOSS) in row_at]
    return f"## {title}\n\n" + markdown_table(headers, body) + "\nParallel fusion, per target:\n\n" + "".join(notes)


def _fused_note(target: str, fused: Mapping) -> str:
    """One line of a target's fused row: images attacked and set aside, successes at the first record,
    mean perturbation of the chosen examples."""
    return (f"- {target}: {fused['images']} images attacked, {fused['set_aside']} set aside; "
            f"{fused['at_first']} of {fused['successes']} successes at the first record; "
            f"L∞ {cell(fused['linf'], 2, 255.0)}/255, L2 {cell(fused['l2'], 2)}, "
            f"SSIM {cell(fused['ssim'], 3)}, PSNR {cell(fused['psnr'], 2)} dB\n")


def summary_markdown(rows: Sequence[Mapping]) -> str:
    """The Markdown report of :func:`summary_rows` (the text of ``summary.md``).

    One section per dataset (and eps, when the rows have it), in the order of ``rows``.
    """
    out = [
        "# MedIS attack summary\n",
        "ASR % = successes / images attacked x 100; distortion = mean step index of the first "
        "successful iterate over the successes; `parallel fusion` keeps, per image, the successful "
        "loss with the fewest steps (Shukla, Gupta, Gupta, MTAP 2023). Clean mode sets aside, and does "
        "not count, the images whose clean prediction already met the success rule; its targeted "
        "score is the least share reached of the two sides of the target (the pixels that must become "
        "lesion, those that must become background), a success at least half of each. real ASR % = "
        "successes that also hold through the real pipeline (the same image saved as an 8-bit file "
        "within the budget, read by the loaders' resize), over the images that pipeline does not "
        "already fail. `-`: nothing to average.\n",
    ]
    if not rows:
        out.append("No records.\n")
        return "\n".join(out)
    has_eps = any(EPS_KEY in row for row in rows)
    sections: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["dataset"], row.get(EPS_KEY)) if has_eps else (row["dataset"],)
        sections.setdefault(key, []).append(dict(row))
    for key, members in sections.items():
        title = str(key[0]) + (f" ({_eps_text(key[1])})" if has_eps else "")
        out.append(_section(title, members))
    return "\n".join(out)


def summary_csv(rows: Sequence[Mapping]) -> str:
    """The CSV text of :func:`summary_rows` (columns :data:`SUMMARY_COLUMNS`, eps when present)."""
    has_eps = any(EPS_KEY in row for row in rows)
    return rows_csv(rows, [c for c in SUMMARY_COLUMNS if c != EPS_KEY or has_eps])


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_summary(records: Iterable[Mapping], out_dir: str | os.PathLike, *, dedupe: bool = False,
                  partial: str | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/summary.csv`` and ``out_dir/summary.md`` (atomically) from the records.

    Args:
        records: one mapping per (image, target kind, loss).
        out_dir: the output folder (created if missing).
        dedupe: keep the last of duplicate records instead of raising.
        partial: for a run that stopped early, why (e.g. ``"stopped by SIGTERM after 3 of 8
            images"``): summary.md then opens with ``**Partial**: <why>``.

    Returns:
        ``(csv_path, md_path)``.

    Raises:
        ValueError: as :func:`medis.results.fusion.summary_table`; nothing is written then.
    """
    rows = summary_rows(records, dedupe=dedupe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "summary.csv", out / "summary.md"
    csv_text, md_text = summary_csv(rows), summary_markdown(rows)
    if partial:
        md_text = f"**Partial**: {partial}. The tables below cover only these images.\n\n{md_text}"
    atomic_write_text(csv_path, csv_text)
    atomic_write_text(md_path, md_text)
    return csv_path, md_path
