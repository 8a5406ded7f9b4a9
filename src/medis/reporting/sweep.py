"""Sweep reports: the records of every job of a Hydra multirun, fused and compared side by side.

A Hydra multirun folder holds one folder per job (``<root>/<job number>/``, or deeper when the
sweep's ``subdir`` has several levels), each with a ``records.csv`` and a ``.hydra/overrides.yaml``
(the YAML list of the job's command-line overrides). :func:`gather` reads them all and tags every
record with its job's *label*: the job's overrides without those whose effect is already a record
column or that only split the work (:data:`LABEL_IGNORED_KEYS`), sorted and joined by spaces.

So jobs that only split the losses, the targets, the images (``data.shard``) or the eps of one experiment share a label and are
fused and compared together (parallel fusion across jobs picks, per image, the successful loss with
the fewest steps, whichever job ran it), while jobs that differ in e.g. ``attack.steps``, ``seed``
or ``model`` keep apart. A plain single run folder (``records.csv`` at its top) works as well.

:func:`write_comparison` writes ``comparison.csv`` (every per-loss and fused row of
:func:`comparison_rows`) and ``comparison.md`` (per job label and dataset, a table whose rows are
the losses and ``parallel fusion`` and whose columns are ASR % and distortion per target and eps).

Pure Python (and PyYAML, which OmegaConf depends on): no torch, no matplotlib.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medis.errors import DataError
from medis.reporting.atomic import atomic_write_text
from medis.reporting.record_file import read_records
from medis.reporting.tables import cell, markdown_table, rows_csv, target_order
from medis.results.fusion import FUSED_LOSS, summary_table
from medis.results.records import Record
from medis.results.values import order_key

__all__ = [
    "COMPARISON_COLUMNS",
    "JOB_KEY",
    "LABEL_IGNORED_KEYS",
    "NO_LABEL",
    "RECORDS_FILE",
    "REPORT_DIR",
    "Job",
    "comparison_csv",
    "comparison_markdown",
    "comparison_rows",
    "find_jobs",
    "gather",
    "job_label",
    "override_key",
    "write_comparison",
]

LABEL_IGNORED_KEYS: tuple[str, ...] = ("losses", "losses.*", "target", "target.*", "attack.budget.eps", "data.shard",
                                        "hydra.*", "resume")
"""Override keys left out of a job's label: ``losses``/``target``/``attack.budget.eps`` are record
columns (loss, target, eps); ``data.shard`` splits the images, ``hydra.*`` and ``resume`` only say
where and how the work is done.
``"x.*"`` matches every key below ``x`` (``x.a``, ``x.a.b``), not ``x`` itself."""
JOB_KEY = "job"
"""The record key :func:`gather` adds: the job's label."""
NO_LABEL = "-"
"""How an empty label (a job with no distinguishing override) is shown in tables and plots."""
RECORDS_FILE = "records.csv"
REPORT_DIR = "report"
"""Folders with this name are not searched for records (the report CLI writes there)."""
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
COMPARISON_COLUMNS: tuple[str, ...] = (
    "job", "dataset", "target", "eps", "loss", "images", "successes", "asr", "distortion",
    "linf", "l2", "ssim", "psnr",
)
"""Columns of ``comparison.csv`` (``job`` empty for an empty label, ``eps`` empty when none)."""


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its folder, its records file, its overrides and its label."""

    folder: Path
    records: Path
    overrides: list[str]
    label: str


def override_key(override: str) -> str:
    """The config key an override string sets: ``"+attack.steps=20"`` -> ``"attack.steps"``.

    Hydra's prefixes (``+``, ``++``, ``~``) and a package (``group@pkg=...``) are dropped, and a
    group path's ``/`` becomes ``.`` (``hydra/launcher=joblib`` -> ``hydra.launcher``).
    """
    key = override.split("=", 1)[0].strip().lstrip("+~")
    return key.split("@", 1)[0].replace("/", ".")


def _ignored(key: str) -> bool:
    """Whether an override key is in :data:`LABEL_IGNORED_KEYS` (``x.*`` = strictly below ``x``)."""
    for pattern in LABEL_IGNORED_KEYS:
        if pattern.endswith(".*"):
            if key.startswith(pattern[:-1]):
                return True
        elif key == pattern:
            return True
    return False


def job_label(overrides: Iterable[str]) -> str:
    """The label of a job: its overrides minus :data:`LABEL_IGNORED_KEYS`, sorted, space-joined.

    Returns ``""`` when no override is left.
    """
    return " ".join(sorted(o for o in overrides if not _ignored(override_key(o))))


def _read_overrides(folder: Path) -> list[str]:
    """The override strings of a job folder (``[]`` when it has no ``.hydra/overrides.yaml``)."""
    path = folder / OVERRIDES_FILE
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a YAML list of overrides ({type(err).__name__})") from None
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise DataError(f"{path}: expected a YAML list of override strings, got {data!r}")
    return data


def _natural_key(path: Path) -> tuple:
    """Sort key of a relative path comparing digit runs as numbers (``2`` before ``10``)."""
    return tuple(
        tuple((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk) for chunk in re.split(r"(\d+)", part))
        for part in path.parts
    )


def _records_files(root: Path) -> list[Path]:
    """Every ``records.csv`` under ``root`` (``report`` folders skipped), in natural path order."""
    found = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = [name for name in subdirs if name != REPORT_DIR]
        if RECORDS_FILE in files:
            found.append(Path(folder) / RECORDS_FILE)
    return sorted(found, key=lambda path: _natural_key(path.relative_to(root)))


def _check_folder(root: str | os.PathLike) -> Path:
    """``root`` as a Path; DataError when it is not an existing folder."""
    path = Path(root)
    if not path.exists():
        raise DataError(f"{path}: folder not found")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    return path


def find_jobs(root: str | os.PathLike) -> list[Job]:
    """The jobs under a multirun (or single run) folder.

    Returns:
        One :class:`Job` per ``records.csv`` found recursively under ``root`` (folders named
        ``report`` skipped), in natural order of their paths (job ``2`` before job ``10``); ``[]``
        when there is none.

    Raises:
        DataError: ``root`` is not an existing folder, or an ``overrides.yaml`` is not a YAML list
            of strings.
    """
    root = _check_folder(root)
    jobs = []
    for records in _records_files(root):
        overrides = _read_overrides(records.parent)
        jobs.append(Job(records.parent, records, overrides, job_label(overrides)))
    return jobs


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

_DUPLICATE_KEYS = (JOB_KEY, "dataset", "target", "eps", "image_id", "loss")


def _describe(key: tuple) -> str:
    return "(" + ", ".join(f"{name}={value!r}" for name, value in zip(_DUPLICATE_KEYS, key)) + ")"


def _duplicate_error(key: tuple, first: Path, second: Path) -> DataError:
    """The one-line error for a record key found in ``first`` and again in ``second``."""
    where = f"twice in {first}" if first == second else f"in both {first} and {second}"
    return DataError(f"record {_describe(key)} is {where}; pass --dedupe to keep the later one")


def gather(root: str | os.PathLike, *, dedupe: bool = False) -> list[Record]:
    """All records of all jobs under ``root``, each tagged with ``"job"`` = its job's label.

    Args:
        root: a multirun folder or a single run folder.
        dedupe: when the same (job, dataset, target, eps, image_id, loss) occurs twice, keep the
            record of the later folder (natural order; the later row within one file) instead of
            raising.

    Returns:
        The records (see :func:`medis.reporting.read_records`) in job order, each with the tag
        ``"job"``.

    Raises:
        DataError: ``root`` is missing, holds no ``records.csv``, a records file is unreadable, or
            (without ``dedupe``) a record key occurs twice; the message names the folder(s).
    """
    jobs = find_jobs(root)
    if not jobs:
        raise DataError(f"{root}: no {RECORDS_FILE} found in it or below it")
    kept: dict[tuple, Record] = {}
    source: dict[tuple, Path] = {}
    for job in jobs:
        for record in read_records(job.records):
            record = record.tagged(**{JOB_KEY: job.label})
            key = tuple(record[name] for name in _DUPLICATE_KEYS)
            if key in kept:
                if not dedupe:
                    raise _duplicate_error(key, source[key], job.folder)
                del kept[key]  # re-inserted below, where the kept record now sits
            kept[key] = record
            source[key] = job.folder
    return list(kept.values())


# --------------------------------------------------------------------------------------------
# Comparison table
# --------------------------------------------------------------------------------------------


def _group_order(row: Mapping) -> tuple:
    """Sort key of a row's group: job label, dataset, target (paper order), eps."""
    return (row[JOB_KEY], row["dataset"], target_order(row["target"]), order_key(row.get("eps")))


def comparison_rows(records: Iterable[Record | Mapping]) -> list[dict]:
    """The rows of :func:`medis.results.fusion.summary_table` grouped by job label as well.

    Returns:
        Per group (job, dataset, target, eps) the per-loss rows by loss name, then the
        ``"parallel fusion"`` row (with ``"chosen": {image_id: loss}``), groups ordered by job
        label, dataset, target (the target-kind registry's order) and eps. Keys:
        ``job, dataset, target, eps, loss, images, successes, asr, distortion, linf, l2, ssim,
        psnr`` (``eps`` is ``None`` for records without one).

    Raises:
        ValueError: as :func:`medis.results.fusion.summary_table` (a record misses a key, has a bad value,
            or occurs twice).
    """
    rows = summary_table(list(records), by=(JOB_KEY,))
    for row in rows:
        row.setdefault("eps", None)
    return sorted(rows, key=_group_order)  # stable: a group's rows keep their order


def comparison_csv(rows: Sequence[Mapping]) -> str:
    """The CSV text of :func:`comparison_rows` (columns :data:`COMPARISON_COLUMNS`)."""
    return rows_csv(rows, COMPARISON_COLUMNS)


def _column_title(target: str, eps: Any) -> str:
    """``"white"`` or ``"white, eps 8/255"``: the head of a (target, eps) column pair."""
    if eps is None:
        return target
    return f"{target}, eps {float(eps) * 255:.3g}/255"


def _section(label: str, dataset: str, rows: list[dict]) -> str:
    """One (job label, dataset) section: heading and the loss x (target, eps) table."""
    columns = sorted({(row["target"], row["eps"]) for row in rows},
                     key=lambda column: (target_order(column[0]), order_key(column[1])))
    losses = sorted({row["loss"] for row in rows if row["loss"] != FUSED_LOSS}) + [FUSED_LOSS]
    row_at = {(row["target"], row["eps"], row["loss"]): row for row in rows}
    headers = ["loss"]
    for target, eps in columns:
        headers += [f"{_column_title(target, eps)} ASR %", f"{_column_title(target, eps)} distortion"]
    body = []
    for loss in losses:
        line = [loss]
        for target, eps in columns:
            row = row_at.get((target, eps, loss))
            line += ["-", "-"] if row is None else [cell(row["asr"], 1), cell(row["distortion"], 2)]
        body.append(line)
    return f"## {dataset}, job: {label or NO_LABEL}\n\n" + markdown_table(headers, body)


def comparison_markdown(rows: Sequence[Mapping]) -> str:
    """The Markdown text of ``comparison.md``: one section per (job label, dataset), in row order."""
    out = [
        "# MedIS sweep comparison\n",
        "Job = the overrides that tell the jobs apart (`" + "`, `".join(LABEL_IGNORED_KEYS) + "` left out: "
        "they are record columns or only split the work); `-`: none. ASR % = successes / images "
        "attacked x 100; distortion = mean step index of the first successful iterate; `parallel "
        "fusion` keeps, per image, the successful loss with the fewest steps, across the jobs of a "
        "label (Shukla, Gupta, Gupta, MTAP 2023). `-` in a cell: not run or nothing to average.\n",
    ]
    if not rows:
        out.append("No records.\n")
        return "\n".join(out)
    sections: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        sections.setdefault((row[JOB_KEY], row["dataset"]), []).append(dict(row))
    out += [_section(label, dataset, members) for (label, dataset), members in sections.items()]
    return "\n".join(out)


def write_comparison(records: Iterable[Record | Mapping], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out_dir/comparison.csv`` and ``out_dir/comparison.md`` (atomically).

    Args:
        records: records with a ``"job"`` key (as :func:`gather` returns them).
        out_dir: the output folder (created if missing).

    Returns:
        ``(csv_path, md_path)``.

    Raises:
        ValueError: as :func:`comparison_rows`; nothing is written then.
    """
    rows = comparison_rows(records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "comparison.csv", out / "comparison.md"
    atomic_write_text(csv_path, comparison_csv(rows))
    atomic_write_text(md_path, comparison_markdown(rows))
    return csv_path, md_path
