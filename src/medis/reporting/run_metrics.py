"""An attack run's numbers as logger metrics and long-format tables, named so that the runs of any
sweep (over data set, eps, losses, target kinds or attack) share their keys.

Metric names never hold eps, and hold a target kind or data set only where the run itself holds
several of them:

- ``attack/asr``, ``attack/distortion``, ``attack/real_asr``, ``attack/images``, ``attack/set_aside``,
  ``attack/successes``: parallel fusion over everything the run attacked (all its data sets and
  target kinds; ASR over the attacked images, distortion over the successes; NaN where there is
  nothing to average, so that every run logs every key);
- ``attack/by_loss/<loss>/<metric>``: each loss alone, over the same images;
- ``attack/by_target/<kind>/<metric>`` when the run has several target kinds, and
  ``attack/by_dataset/<set>/<metric>`` when it has several data sets (parallel fusion).

The full breakdown is a long-format table: one row per data set x target x loss
(:func:`summary_table_rows`) and one per record (:func:`record_table_rows`), each row carrying the
run's ``eps`` and ``attack``, so tables of many runs concatenate into one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from medis.results.fusion import FUSED_LOSS
from medis.results.records import Record

__all__ = ["run_metrics", "summary_table_rows", "record_table_rows", "SUMMARY_COLUMNS", "RECORD_COLUMNS"]

NAN = float("nan")
SUMMARY_COLUMNS = ("dataset", "target", "loss", "attack", "eps", "images", "set_aside", "successes", "asr",
                   "distortion", "real_asr", "linf", "l2", "ssim", "psnr")
RECORD_COLUMNS = ("dataset", "image_id", "target", "loss", "attack", "eps", "set_aside", "success", "steps",
                  "metric", "clean_metric", "real_success", "linf_255", "l2", "ssim", "psnr", "forwards",
                  "backwards")


def _pooled(rows: list[Mapping]) -> dict[str, float]:
    """Rows of one loss (or fused) over several groups pooled into one set of numbers."""
    images = sum(int(r.get("images") or 0) for r in rows)
    successes = sum(int(r.get("successes") or 0) for r in rows)
    out = {"images": float(images), "successes": float(successes),
           "set_aside": float(sum(int(r.get("set_aside") or 0) for r in rows)),
           "asr": NAN, "distortion": NAN, "real_asr": NAN}  # every run logs every key
    if images:
        out["asr"] = 100.0 * successes / images
        real = [r for r in rows if r.get("real_asr") is not None and r.get("images")]
        if real:
            out["real_asr"] = sum(float(r["real_asr"]) * int(r["images"]) for r in real) / sum(int(r["images"]) for r in real)
    distorted = [r for r in rows if r.get("distortion") is not None and r.get("successes")]
    if distorted:
        out["distortion"] = (sum(float(r["distortion"]) * int(r["successes"]) for r in distorted)
                             / sum(int(r["successes"]) for r in distorted))
    return out


def run_metrics(rows: Iterable[Mapping]) -> dict[str, float]:
    """Scalar metrics of one run from its summary rows (:func:`medis.reporting.summary_rows`)."""
    rows = list(rows)
    fused = [r for r in rows if r["loss"] == FUSED_LOSS]
    metrics = {f"attack/{key}": value for key, value in _pooled(fused).items()}
    for loss in sorted({r["loss"] for r in rows} - {FUSED_LOSS}):
        for key, value in _pooled([r for r in rows if r["loss"] == loss]).items():
            metrics[f"attack/by_loss/{loss}/{key}"] = value
    for column, prefix in (("target", "by_target"), ("dataset", "by_dataset")):
        values = sorted({str(r[column]) for r in fused})
        if len(values) > 1:
            for value in values:
                for key, number in _pooled([r for r in fused if str(r[column]) == value]).items():
                    metrics[f"attack/{prefix}/{value}/{key}"] = number
    return metrics


def summary_table_rows(rows: Iterable[Mapping], attack: str, eps: float | None) -> list[list[Any]]:
    """One table row per data set x target x loss (the fused row as loss ``parallel fusion``), in
    :data:`SUMMARY_COLUMNS` order."""
    table = []
    for row in rows:
        values = {**row, "attack": attack, "eps": row.get("eps", eps)}
        table.append([values.get(column) for column in SUMMARY_COLUMNS])
    return table


def record_table_rows(records: Iterable[Record | Mapping], attack: str) -> list[list[Any]]:
    """One table row per record, in :data:`RECORD_COLUMNS` order (``attack``: the member that made
    it, else the run's attack)."""
    table = []
    for record in records:
        values = {column: record.get(column) for column in RECORD_COLUMNS}
        values["attack"] = values["attack"] or attack
        table.append([values[column] for column in RECORD_COLUMNS])
    return table
