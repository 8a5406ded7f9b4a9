"""Sweep report: fuse and compare the records of every job of a Hydra multirun (or of one run).

Usage::

    python -m medis.report outputs/attack/multiruns/<time> [--out DIR] [--dedupe]

Finds every ``records.csv`` below the folder (``report`` folders skipped), labels each job by the
overrides that tell it apart (see :data:`medis.reporting.sweep.LABEL_IGNORED_KEYS`: jobs that only
split losses, targets or eps are fused together), and writes to ``--out`` (default
``<folder>/report``):

- ``comparison.csv``: ASR, distortion and mean norms per (job, dataset, target, eps, loss), plus
  the ``parallel fusion`` row of every group;
- ``comparison.md``: per job and dataset, losses x (target, eps) tables of ASR % and distortion;
- ``asr_vs_eps.png``: ASR % against eps per (job, dataset, target) (only when the attacks had an
  eps budget);
- ``distortion_histogram.png``: distortion of the examples parallel fusion keeps, per target
  (only when some attack succeeded);
- ``attacks.csv`` and ``attacks.md`` (only when some record names its ``attack``, e.g. PGD, APGD,
  or an ensemble run): per (job, dataset, target, eps) and attack, the clean and adversarial mIoU,
  the ASR and the forward / backward passes per image, plus the ``ensemble`` row, the per-image
  worst case over the attacks (see :mod:`medis.reporting.compare`).

It prints the Markdown (comparison, then attacks) and the paths written. ``--dedupe`` keeps the
later folder's record when two job folders hold the same (job, dataset, target, eps, image, loss)
instead of failing. A user error (missing folder, no records, duplicates, unreadable records, a
record without trajectory when attacks are compared) prints one ``error: ...`` line and exits
with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from medis.errors import DataError, exit_on_user_error
from medis.reporting.attack_tables import write_attack_rows
from medis.reporting.compare import attack_comparison, has_attacks
from medis.reporting.plots import plot_asr_vs_eps, plot_distortion_histogram
from medis.reporting.sweep import JOB_KEY, REPORT_DIR, comparison_rows, gather, write_comparison

__all__ = ["main"]

ASR_PLOT = "asr_vs_eps.png"
HISTOGRAM_PLOT = "distortion_histogram.png"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m medis.report",
        description="Fuse and compare the attack records of a Hydra multirun (or single run) folder.")
    parser.add_argument("folder", help="multirun folder (or single run folder) holding records.csv files")
    parser.add_argument("--out", default=None, help=f"output folder (default <folder>/{REPORT_DIR})")
    parser.add_argument("--dedupe", action="store_true",
                        help="keep the later folder's record when two jobs hold the same record")
    return parser


def _rows(folder: Path, records: Sequence[Mapping]) -> list[dict]:
    """The comparison rows; a record that fusion rejects becomes a DataError naming the folder."""
    try:
        return comparison_rows(records)
    except ValueError as err:
        raise DataError(f"{folder}: {err}") from None


def _attack_rows(folder: Path, records: Sequence[Mapping]) -> list[dict] | None:
    """The attack comparison rows per job label, or None when no record names its attack."""
    if not has_attacks(records):
        return None
    try:
        return attack_comparison(records, by=(JOB_KEY,))
    except ValueError as err:
        raise DataError(f"{folder}: {err}") from None


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status 0."""
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    out = Path(args.out) if args.out is not None else folder / REPORT_DIR
    records = gather(folder, dedupe=args.dedupe)
    rows = _rows(folder, records)  # validates the records before anything is written
    attack_rows = _attack_rows(folder, records)
    csv_path, md_path = write_comparison(records, out)
    plots = (plot_asr_vs_eps(rows, out / ASR_PLOT), plot_distortion_histogram(records, out / HISTOGRAM_PLOT))
    written = [csv_path, md_path] + [path for path in plots if path is not None]
    print(md_path.read_text(encoding="utf-8"))
    if attack_rows is not None:
        attacks_csv, attacks_md = write_attack_rows(attack_rows, out)
        written += [attacks_csv, attacks_md]
        print(attacks_md.read_text(encoding="utf-8"))
    print(f"{len(records)} records, {len({record[JOB_KEY] for record in records})} job label(s); wrote:")
    for path in written:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
