"""The robustness curve's outputs: ``curve.json`` (every number, per image too), ``curve.md`` (the
table: clean and worst-case mIoU and Dice at each radius, with the checks), ``curve.png`` (worst-case
mIoU and Dice against the radius, one line per model) and ``checks.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medis.reporting.atomic import atomic_write, atomic_write_text

__all__ = ["curve_table", "plot_curve", "write_report"]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _radius(eps_255: float) -> str:
    return f"{eps_255:g}/255"


def _verdict(check: Mapping[str, Any]) -> str:
    return {True: "pass", False: "FAIL", None: "skipped"}[check["passed"]]


def curve_table(curve: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per model: clean mIoU/Dice, then worst-case mIoU / Dice at each radius, then
    the checks' verdicts."""
    radii = sorted({float(eps) for model in curve.values() for eps in model["eps"]})
    header = ["model", "clean mIoU", "clean Dice", *(f"mIoU @{_radius(e)}" for e in radii),
              *(f"Dice @{_radius(e)}" for e in radii), "checks"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, model in curve.items():
        at = {float(eps): row for eps, row in model["eps"].items()}
        checks = model.get("checks") or []
        passed = sum(1 for c in checks if c["passed"] is True)
        failed = [c["name"] for c in checks if c["passed"] is False]
        verdict = "-" if not checks else f"{passed}/{len(checks)} pass" + (f"; FAIL: {', '.join(failed)}" if failed else "")
        cells = [label, _cell(model["clean"]["miou"]), _cell(model["clean"]["dice"]),
                 *(_cell(at.get(e, {}).get("miou")) for e in radii), *(_cell(at.get(e, {}).get("dice")) for e in radii),
                 verdict]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Per-image worst case over every member and loss of the attack, averaged over the images "
                 "(mIoU: two-class, lower = stronger attack).")
    for label, model in curve.items():
        for check in model.get("checks") or []:
            lines.append(f"- {label}, {check['name']}: {_verdict(check)}: {check['detail']}")
    return "\n".join(lines) + "\n"


def plot_curve(curve: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Worst-case mIoU and Dice against the radius (the clean score at 0), one line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for axis, metric, name in zip(axes, ("miou", "dice"), ("two-class mIoU", "Dice")):
        for label, model in curve.items():
            points = sorted((float(eps), row[metric]) for eps, row in model["eps"].items() if row[metric] is not None)
            xs = [0.0, *(p[0] for p in points)]
            ys = [model["clean"][metric], *(p[1] for p in points)]
            axis.plot(xs, ys, "-o", label=label)
        axis.set_xlabel("eps (/255, L-inf)")
        axis.set_ylabel(f"mean per-image worst-case {name}")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        axis.set_title(f"{name} under the attack (0 = clean)")
        axis.legend(fontsize=8)
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))


def write_report(run_dir: str | os.PathLike, curve: Mapping[str, Mapping[str, Any]],
                 settings: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``curve.json``, ``curve.md``, ``curve.png`` and ``checks.json`` into ``run_dir``."""
    run_dir = Path(run_dir)
    paths = {"json": run_dir / "curve.json", "table": run_dir / "curve.md", "plot": run_dir / "curve.png",
             "checks": run_dir / "checks.json"}
    atomic_write_text(paths["json"], json.dumps({"settings": dict(settings), "models": curve}, indent=1) + "\n")
    atomic_write_text(paths["table"], curve_table(curve))
    checks = {label: {c["name"]: c for c in model.get("checks") or []} for label, model in curve.items()}
    atomic_write_text(paths["checks"], json.dumps(checks, indent=1) + "\n")
    plot_curve(curve, paths["plot"])
    return paths


def labels_of(checkpoints: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    """Distinct labels of the checkpoints: ``labels`` when given, else the files' stems (with their
    folder where two stems collide)."""
    if labels:
        return [str(label) for label in labels]
    stems = [Path(c).stem for c in checkpoints]
    return [f"{Path(c).parent.name}/{s}" if stems.count(s) > 1 else s for c, s in zip(checkpoints, stems)]
