"""Figures of a sweep report: ASR against the eps budget, and the distortion of the fused examples.

matplotlib is imported inside the functions (never at module import) and only its Agg canvas is
used, without pyplot, so the figures are drawn off screen and no global backend is switched.
Every PNG is written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from medis.reporting.atomic import atomic_write
from medis.reporting.sweep import JOB_KEY
from medis.reporting.tables import target_order
from medis.results.fusion import FUSED_LOSS, choose_per_image

__all__ = ["plot_asr_vs_eps", "plot_distortion_histogram"]

_PANEL_COLUMNS = 3
_PANEL_SIZE = (4.8, 3.6)  # inches per subplot


def _new_figure(panels: int) -> tuple[Any, list[Any]]:
    """A Figure on an Agg canvas with ``panels`` subplots in a grid; returns (figure, used axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(_PANEL_COLUMNS, panels)
    rows = math.ceil(panels / cols)
    figure = Figure(figsize=(_PANEL_SIZE[0] * cols, _PANEL_SIZE[1] * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(rows, cols, squeeze=False).flat)
    for unused in axes[panels:]:
        unused.set_visible(False)
    return figure, axes[:panels]


def _save(figure: Any, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))


def _title(*parts: str) -> str:
    """A subplot title from its non-empty parts, wrapped to 60 columns."""
    return textwrap.fill(" | ".join(part for part in parts if part), 60)


def _short(override: str) -> str:
    """``model.checkpoint=/a/b/c.ckpt`` -> ``checkpoint=c.ckpt``: the last key part, a path's file name."""
    key, _, value = override.partition("=")
    return f"{key.rsplit('.', 1)[-1]}={PurePath(value).name if '/' in value else value}"


def distinct_labels(labels: Iterable[str]) -> dict[str, str]:
    """Job label -> what tells it apart from the other jobs: the overrides not every job shares, each
    shortened (:func:`_short`); ``""`` when nothing differs (one job, or all alike)."""
    labels = sorted(set(labels))
    tokens = {label: label.split() for label in labels}
    common = set.intersection(*(set(t) for t in tokens.values())) if tokens else set()
    return {label: " ".join(_short(t) for t in tokens[label] if t not in common) for label in labels}


def _asr_panels(rows: Iterable[Mapping]) -> dict[tuple[str, str, str], dict[str, list[tuple[float, float]]]]:
    """(job, dataset, target) -> loss -> sorted [(eps x 255, ASR %)], from the rows with an eps."""
    panels: dict[tuple[str, str, str], dict[str, list[tuple[float, float]]]] = {}
    for row in rows:
        if row.get("eps") is None or row.get("asr") is None:
            continue
        key = (row.get(JOB_KEY, ""), row["dataset"], row["target"])
        panels.setdefault(key, {}).setdefault(row["loss"], []).append((float(row["eps"]) * 255, float(row["asr"])))
    ordered = sorted(panels.items(), key=lambda item: (item[0][0], item[0][1], target_order(item[0][2])))
    return {key: {loss: sorted(points) for loss, points in lines.items()} for key, lines in ordered}


def _draw_asr(axis: Any, lines: Mapping[str, list[tuple[float, float]]]) -> None:
    """One ASR-vs-eps subplot: a line per loss over a thick grey parallel-fusion line."""
    for loss in sorted(lines, key=lambda name: (name == FUSED_LOSS, name)):
        xs, ys = zip(*lines[loss])
        if loss == FUSED_LOSS:  # underneath, so that a loss equal to the fusion stays visible
            axis.plot(xs, ys, marker="o", color="black", alpha=0.45, linewidth=5.0, label=loss, zorder=1)
        else:
            axis.plot(xs, ys, marker=".", linewidth=1.3, label=loss, zorder=2)
    axis.set_xticks(sorted({x for points in lines.values() for x, _ in points}))
    axis.set_xlabel("eps (x 1/255)")
    axis.set_ylabel("ASR %")
    axis.set_ylim(-3, 103)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")


def plot_asr_vs_eps(rows: Sequence[Mapping], path: str | os.PathLike) -> Path | None:
    """ASR % against the eps budget, one subplot per (job, dataset, target) with an eps.

    Args:
        rows: rows of :func:`medis.reporting.sweep.comparison_rows` (per loss and fused).
        path: the PNG to write.

    Returns:
        ``path``, or ``None`` (and nothing written) when no row has an eps.
    """
    panels = _asr_panels(rows)
    if not panels:
        return None
    figure, axes = _new_figure(len(panels))
    shown = distinct_labels(job for job, _, _ in panels)
    for axis, ((job, dataset, target), lines) in zip(axes, panels.items()):
        _draw_asr(axis, lines)
        axis.set_title(_title(dataset, target, shown[job]), fontsize="small")
    return _save(figure, path)


def _fused_steps(records: Iterable[Mapping]) -> dict[str, list[int]]:
    """target -> steps of every example parallel fusion keeps (per job, dataset, eps and image)."""
    steps: dict[str, list[int]] = {}
    for record in choose_per_image(records, by=(JOB_KEY,)).values():
        steps.setdefault(record["target"], []).append(int(record["steps"]))
    return dict(sorted(steps.items(), key=lambda item: target_order(item[0])))


def plot_distortion_histogram(records: Iterable[Mapping], path: str | os.PathLike) -> Path | None:
    """Histograms of the distortion (steps) of the examples parallel fusion keeps, one per target.

    Each image counts once per (job, dataset, eps) group; all jobs share a subplot.

    Args:
        records: records with a ``"job"`` key (as :func:`medis.reporting.sweep.gather` gives).
        path: the PNG to write.

    Returns:
        ``path``, or ``None`` (and nothing written) when no record is a success.

    Raises:
        ValueError: as :func:`medis.results.fusion.choose_per_image`.
    """
    from matplotlib.ticker import MaxNLocator

    steps = _fused_steps(records)
    if not steps:
        return None
    figure, axes = _new_figure(len(steps))
    for axis, (target, values) in zip(axes, steps.items()):
        bins = [edge - 0.5 for edge in range(0, max(values) + 2)]  # one bin per step, from step 0
        axis.hist(values, bins=bins, color="tab:blue", edgecolor="white")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(f"{target} ({len(values)} fused examples)", fontsize="small")
        axis.set_xlabel("distortion (steps of the fused example)")
        axis.set_ylabel("images")
    return _save(figure, path)
