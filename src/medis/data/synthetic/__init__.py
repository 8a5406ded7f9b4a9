"""Synthetic dermoscopy and colonoscopy data with exact masks, written in the real folder layouts.

No real data set can be downloaded where this project is built and tested, so these stand-ins
exercise every loader end to end. Command line::

    python -m medis.data.synthetic --kind isic2018 --out data/synthetic_isic --n 300 --size 192

Kinds: ``isic2016``, ``isic2017``, ``isic2018``, ``kvasir``, ``cvc_clinicdb``, ``pranet``,
``generic_dermoscopy``, ``generic_polyp``. Every set is a pure function of (kind, n, size, seed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from medis.data.synthetic.dermoscopy import render_dermoscopy
from medis.data.synthetic.polyp import render_polyp
from medis.data.synthetic.writers import KINDS, MARKER, generate
from medis.errors import exit_on_user_error

__all__ = ["KINDS", "MARKER", "generate", "main", "render_dermoscopy", "render_polyp"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m medis.data.synthetic",
        description="Write a synthetic segmentation set in a real data set's folder layout.")
    parser.add_argument("--kind", required=True, choices=sorted(KINDS), help="layout and image type to write")
    parser.add_argument("--out", required=True, help="folder to create")
    parser.add_argument("--n", type=int, default=300, help="number of images over all splits (default 300)")
    parser.add_argument("--size", type=int, default=192, help="image height in pixels (default 192)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    existed = Path(args.out).exists() and not args.overwrite
    out = generate(args.kind, args.out, args.n, args.size, args.seed, overwrite=args.overwrite)
    if existed:
        print(f"{out} already holds these {args.n} synthetic {args.kind} samples (size {args.size}, seed {args.seed})")
    else:
        print(f"wrote {args.n} synthetic {args.kind} samples to {out} in {time.perf_counter() - start:.1f} s")
