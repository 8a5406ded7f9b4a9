"""A picture of the synthetic data: 8 dermoscopy and 8 colonoscopy images above their masks.

    python -m medis.data.synthetic.preview --out docs/synthetic_samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from medis.data.synthetic.dermoscopy import render_dermoscopy
from medis.data.synthetic.polyp import render_polyp


def sample_grid(count: int = 8, height: int = 144, width: int = 192, seed: int = 0, gap: int = 4) -> np.ndarray:
    """Rows: dermoscopy images, their masks, colonoscopy images, their masks.

    Returns:
        uint8 (4*height + 3*gap, count*width + (count-1)*gap, 3), white gaps between tiles.
    """
    rows = []
    for kind, render in enumerate((render_dermoscopy, render_polyp)):
        pairs = [render(np.random.default_rng([seed, kind, i]), height, width) for i in range(count)]
        rows.append([image for image, _ in pairs])
        rows.append([np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2) for _, mask in pairs])
    grid = np.full((len(rows) * (height + gap) - gap, count * (width + gap) - gap, 3), 255, np.uint8)
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            grid[r * (height + gap):r * (height + gap) + height, c * (width + gap):c * (width + gap) + width] = tile
    return grid


def main(argv: list[str] | None = None) -> None:
    """Write the preview grid as a PNG."""
    parser = argparse.ArgumentParser(prog="python -m medis.data.synthetic.preview", description=__doc__)
    parser.add_argument("--out", default="docs/synthetic_samples.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample_grid(seed=args.seed)).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
