"""Compare README's demo table with a fresh `make demo` run's summary, cell by cell.

README shows the table `make demo` printed on this project's machine (summary.md of
outputs/demo/attack, the six paper losses and parallel fusion per target). A fresh run on another
machine should print the same numbers, up to the tolerance README states (the demo trains its
victim, and training amplifies the rounding of different CPU kernels). This reads both tables, prints
the cells that differ, and exits with status 1 when a difference exceeds the tolerance:

    make demo && .venv/bin/python bench/check_demo_table.py [--asr 0] [--distortion 0] [--dice 0]

(`make demo-check` runs both.) The default tolerances are README's.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"asr": 0.0, "distortion": 0.0, "dice": 0.0}
"""README's stated tolerance: with the demo's pinned kernels and float64 training the table repeats
exactly (differences under a rounding step of the printed numbers)."""


def table(text: str) -> dict[tuple[str, str], float | None]:
    """``{(row, column): value}`` of the first Markdown table whose header starts ``| loss |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| loss |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    cells: dict[tuple[str, str], float | None] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        row = [cell.strip() for cell in line.strip("|").split("|")]
        for column, value in zip(header[1:], row[1:]):
            cells[(row[0], column)] = None if value in ("-", "") else float(value)
    return cells


def val_dice(text: str) -> float | None:
    """The validation Dice README reports for the demo victim ("trained 4 epochs to val Dice 0.931")."""
    found = re.search(r"to\s+val\s+Dice\s+(\d\.\d+)", text)
    return float(found.group(1)) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--run", type=Path, default=ROOT / "outputs" / "demo", help="make demo's folder (DEMO_DIR)")
    for key, value in TOLERANCE.items():
        parser.add_argument(f"--{key}", type=float, default=value, help=f"tolerance of the {key} cells (default {value})")
    args = parser.parse_args()
    summary = args.run / "attack" / "summary.md"
    if not summary.is_file():
        print(f"error: {summary}: no summary; run `make demo` first", file=sys.stderr)
        return 2
    readme_text = args.readme.read_text(encoding="utf-8")
    want, got = table(readme_text), table(summary.read_text(encoding="utf-8"))
    failures = []
    for key in sorted(set(want) | set(got)):
        a, b = want.get(key), got.get(key)
        tolerance = args.distortion if "distortion" in key[1] else args.asr
        if (a is None) != (b is None) or (a is not None and abs(a - b) > tolerance + 1e-9):
            failures.append(f"{key[0]} / {key[1]}: README {a}, this run {b}")
    best = sorted((args.run / "train" / "checkpoints").glob("best-*.ckpt"))  # best-epochNNN-dice0.9243.ckpt
    found = re.search(r"dice(\d\.\d+)", best[-1].name) if best else None
    trained = float(found.group(1)) if found else None
    readme_dice = val_dice(readme_text)
    if trained is not None and readme_dice is not None and abs(trained - readme_dice) > args.dice + 5e-4:
        failures.append(f"val Dice: README {readme_dice}, this run {trained}")
    print(f"{len(want)} cells of README's demo table, {len(failures)} outside the tolerance")
    for line in failures:
        print(f"  {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
