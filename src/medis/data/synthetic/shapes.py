"""Building blocks of the synthetic images: smooth noise, star-shaped outlines, soft edges, strokes.

All functions draw from a ``numpy.random.Generator`` passed in, so an image is a pure function of
its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: float, octaves: int = 4,
                 persistence: float = 0.5) -> np.ndarray:
    """Multi-octave value noise: Gaussian grids upsampled bicubically and summed.

    Args:
        cells: grid cells along the longer side at the coarsest octave (feature count).
        octaves: number of octaves, each with twice the cells and ``persistence`` times the amplitude.

    Returns:
        float32 (height, width), roughly zero mean and unit standard deviation.
    """
    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    longer = max(height, width)
    for octave in range(octaves):
        n = cells * 2**octave
        grid_h = max(2, int(np.ceil(n * height / longer)) + 1)
        grid_w = max(2, int(np.ceil(n * width / longer)) + 1)
        grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
        layer = np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC))
        total += amplitude * layer
        norm += amplitude**2
        amplitude *= persistence
    total /= np.sqrt(norm)
    return total / max(float(total.std()), 1e-6)


@dataclass(frozen=True)
class StarShape:
    """A star-shaped outline r(θ) = radius·(1 + Σ a_k cos(kθ + φ_k)), stretched and rotated.

    Star-shaped about its centre, so the region ``field < 1`` is one piece without holes.
    """

    cy: float
    cx: float
    radius: float
    aspect: float
    angle: float
    orders: np.ndarray
    amplitudes: np.ndarray
    phases: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, cy: float, cx: float, radius: float, irregularity: float,
               jaggedness: float, aspect: float | None = None) -> "StarShape":
        """Low orders 2..7 scaled by ``irregularity``, high orders 12..40 by ``jaggedness``."""
        low = np.arange(2, 8)
        high = rng.choice(np.arange(12, 41), size=6, replace=False)
        orders = np.concatenate([low, high]).astype(np.float32)
        amplitudes = np.concatenate([
            irregularity * rng.uniform(0.2, 1.0, low.size) / low**0.9,
            jaggedness * rng.uniform(0.3, 1.0, high.size),
        ]).astype(np.float32)
        phases = rng.uniform(0, 2 * np.pi, orders.size).astype(np.float32)
        if aspect is None:
            aspect = float(rng.uniform(0.65, 1.0))
        return cls(cy, cx, radius, aspect, float(rng.uniform(0, np.pi)), orders, amplitudes, phases)

    def field(self, height: int, width: int) -> np.ndarray:
        """Normalised radial coordinate ρ / r(θ): < 1 inside, 1 on the outline.

        Returns:
            float32 (height, width).
        """
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        dy, dx = yy - self.cy, xx - self.cx
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u = dx * cos + dy * sin
        v = (-dx * sin + dy * cos) / self.aspect
        rho = np.hypot(u, v)
        theta = np.arctan2(v, u)
        # r(θ) tabulated once on a fine grid (4096 angles) and interpolated: the same field defines
        # both the drawing and the mask, so the mask stays exact.
        grid = np.linspace(-np.pi, np.pi, 4097, dtype=np.float32)
        wobble = (self.amplitudes[:, None] * np.cos(self.orders[:, None] * grid[None] + self.phases[:, None])).sum(0)
        table = self.radius * np.maximum(1.0 + wobble, 0.35)
        r = np.interp(theta, grid, table)
        return (rho / r).astype(np.float32)


def soft_edge(field: np.ndarray, softness: float) -> np.ndarray:
    """Opacity from a radial field: 0.5 on the outline, falling off over ``softness`` (field units).

    Returns:
        float32 in [0, 1], same shape as ``field``.
    """
    return (1.0 / (1.0 + np.exp(np.clip((field - 1.0) / max(softness, 1e-3) * 4.0, -30, 30)))).astype(np.float32)


def blend(base: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``color`` (H,W,3 or 3,) over ``base`` (H,W,3) with ``alpha`` (H,W)."""
    return base * (1.0 - alpha[..., None]) + color * alpha[..., None]


def random_curves(rng: np.random.Generator, height: int, width: int, count: int, length: tuple[float, float],
                  width_px: tuple[int, int], bend: float = 0.3, branching: bool = False) -> np.ndarray:
    """Coverage map of curved strokes (quadratic Bézier polylines), for hairs and vessels.

    Args:
        length: stroke length range as a fraction of the image diagonal.
        width_px: stroke width range in pixels (inclusive).
        bend: how far the control point strays from the chord, as a fraction of the length.
        branching: add a shorter side stroke to each stroke (vessel trees).

    Returns:
        float32 (height, width) in [0, 1]: 1 where a stroke is drawn.
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    diagonal = float(np.hypot(height, width))
    t = np.linspace(0.0, 1.0, 24)[:, None]

    def stroke(start: np.ndarray, size: float, direction: float, thickness: int) -> np.ndarray:
        end = start + size * np.array([np.cos(direction), np.sin(direction)])
        normal = np.array([-np.sin(direction), np.cos(direction)])
        control = (start + end) / 2 + normal * size * rng.uniform(-bend, bend)
        points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        draw.line([tuple(p) for p in points], fill=255, width=thickness, joint="curve")
        return points

    for _ in range(count):
        start = rng.uniform([0, 0], [width, height])
        size = rng.uniform(*length) * diagonal
        direction = rng.uniform(0, 2 * np.pi)
        thickness = int(rng.integers(width_px[0], width_px[1] + 1))
        points = stroke(start, size, direction, thickness)
        if branching:
            fork = points[int(rng.integers(6, 18))]
            stroke(fork, size * rng.uniform(0.3, 0.6), direction + rng.uniform(-1.2, 1.2), max(1, thickness - 1))
    return np.asarray(canvas, np.float32) / 255.0
