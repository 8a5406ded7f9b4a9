"""Synthetic colonoscopy frames with exact polyp masks (stand-ins for Kvasir-SEG, CVC-ClinicDB and
PraNet's polyp sets).

What is drawn (docs/data.md): reddish mucosa texture with folds and branching vessels, a
dark lumen, the endoscope's light fall-off, one or two dome-shaded polyps of low colour contrast
with specular highlights (highlights on the mucosa too), the black frame of the endoscope image
and, in some frames, the green box of a scope guide in a corner. The mask is the union of the
polyps' outlines within the visible field, exact by construction.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from medis.data.synthetic.shapes import StarShape, blend, random_curves, smooth_noise, soft_edge


def _mucosa(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Mucosa: reddish base, texture, folds, vessels. (H,W,3) float."""
    tone = rng.uniform([175, 70, 55], [225, 125, 100]).astype(np.float32)
    texture = smooth_noise(rng, height, width, cells=4, octaves=5, persistence=0.6)
    image = tone * (1.0 + 0.06 * texture[..., None])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.2, 0.45) * max(height, width)
    warp = smooth_noise(rng, height, width, cells=2, octaves=2) * period * 0.25
    folds = np.sin(2 * np.pi * ((xx * np.cos(angle) + yy * np.sin(angle)) + warp) / period)
    image *= (1.0 + rng.uniform(0.03, 0.1) * folds)[..., None]
    vessels = random_curves(rng, height, width, int(rng.integers(3, 12)), (0.08, 0.3), (1, 2), bend=0.5,
                            branching=True)
    return blend(image, tone * np.array([0.7, 0.45, 0.5], np.float32), rng.uniform(0.25, 0.6) * vessels)


def _highlights(rng: np.random.Generator, height: int, width: int, cy: float, cx: float, spread: float,
                count: int) -> np.ndarray:
    """Specular reflections: small bright ellipses around (cy, cx). Coverage map (H,W)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(count):
        y, x = cy + rng.normal(0, spread), cx + rng.normal(0, spread)
        ry, rx = rng.uniform(0.5, 2.5, 2) * min(height, width) / 100.0
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=255)
    return np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.7)), np.float32) / 255.0


def _frame(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Visible area of an endoscope frame: an octagon with cut corners. Mask (H,W) in {0,1}."""
    canvas = Image.new("L", (width, height), 0)
    mx, my = rng.uniform(0.0, 0.04) * width, rng.uniform(0.0, 0.04) * height
    cut = rng.uniform(0.08, 0.2) * min(height, width)
    x0, y0, x1, y1 = mx, my, width - 1 - mx, height - 1 - my
    ImageDraw.Draw(canvas).polygon(
        [(x0 + cut, y0), (x1 - cut, y0), (x1, y0 + cut), (x1, y1 - cut), (x1 - cut, y1), (x0 + cut, y1),
         (x0, y1 - cut), (x0, y0 + cut)], fill=255)
    return np.asarray(canvas, np.float32) / 255.0


def _scope_guide(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The scope guide's box in the lower-left corner: (RGB overlay (H,W,3), coverage (H,W))."""
    bw, bh = int(rng.uniform(0.18, 0.26) * width), int(rng.uniform(0.2, 0.3) * height)
    box = Image.new("RGB", (width, height), (0, 0, 0))
    cover = Image.new("L", (width, height), 0)
    top = height - bh - int(0.02 * height)
    draw = ImageDraw.Draw(box)
    draw.rectangle([2, top, 2 + bw, top + bh], fill=(10, 30, 12), outline=(40, 190, 60), width=2)
    curve = [(2 + bw * f, top + bh * (0.8 - 0.5 * np.sin(np.pi * f))) for f in np.linspace(0.1, 0.9, 12)]
    draw.line(curve, fill=(60, 220, 80), width=2)
    ImageDraw.Draw(cover).rectangle([2, top, 2 + bw, top + bh], fill=255)
    return np.asarray(box, np.float32), np.asarray(cover, np.float32) / 255.0


def _dome_shading(rng: np.random.Generator, field: np.ndarray, radius: float) -> np.ndarray:
    """Lambertian shading of a dome of height sqrt(1 - field²), lit from a random side. (H,W)."""
    dome = np.sqrt(np.clip(1.0 - field**2, 0, 1)) * radius * rng.uniform(0.5, 1.0)
    gy, gx = np.gradient(dome)
    tilt = rng.uniform(0, 2 * np.pi)
    light = np.array([0.5 * np.cos(tilt), 0.5 * np.sin(tilt), 1.0])
    light /= np.linalg.norm(light)
    diffuse = (-gx * light[0] - gy * light[1] + light[2]) / np.sqrt(gx**2 + gy**2 + 1.0)
    return 0.5 + 0.6 * np.clip(diffuse, 0, 1) * (field < 1.2)


def render_polyp(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one colonoscopy frame and its exact polyp mask.

    Returns:
        (image ``uint8`` (height, width, 3), mask ``bool`` (height, width)).
    """
    short = min(height, width)
    image = _mucosa(rng, height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    lumen = StarShape.random(rng, rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width,
                             rng.uniform(0.06, 0.16) * short, 0.12, 0.0)
    lumen_field = lumen.field(height, width)
    depth = np.exp(-np.clip(lumen_field - 1.0, 0, None) * rng.uniform(0.25, 0.6))
    image *= (1.0 - 0.55 * depth)[..., None]
    image = blend(image, np.float32(15.0), 0.92 * soft_edge(lumen_field, 0.9))

    mask = np.zeros((height, width), bool)
    for _ in range(1 if rng.random() < 0.75 else 2):
        for _attempt in range(20):  # keep polyps off the lumen's centre
            cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
            if np.hypot(cy - lumen.cy, cx - lumen.cx) > lumen.radius + 0.1 * short:
                break
        polyp = StarShape.random(rng, cy, cx, rng.uniform(0.1, 0.28) * short, rng.uniform(0.03, 0.2),
                                 rng.uniform(0.0, 0.006))
        field = polyp.field(height, width)
        image *= (1.0 - 0.3 * np.exp(-np.clip(field - 1.0, 0, None) / 0.08) * (field >= 1.0))[..., None]
        surface = image * rng.uniform([0.95, 0.9, 0.9], [1.2, 1.4, 1.35]).astype(np.float32)
        surface *= (_dome_shading(rng, field, polyp.radius)
                    + 0.04 * smooth_noise(rng, height, width, cells=12, octaves=2))[..., None]
        contrast = rng.uniform(0.45, 1.0)
        image = blend(image, image + contrast * (surface - image), soft_edge(field, rng.uniform(0.02, 0.1)))
        spots = _highlights(rng, height, width, cy - 0.3 * polyp.radius, cx - 0.2 * polyp.radius,
                            0.3 * polyp.radius, int(rng.integers(1, 6)))
        image = blend(image, np.float32(252.0), spots * (field < 1.0))
        mask |= field < 1.0

    wet = _highlights(rng, height, width, height / 2, width / 2, 0.3 * short, int(rng.integers(0, 8)))
    image = blend(image, np.float32(250.0), wet * ~mask)
    light = 1.0 - rng.uniform(0.2, 0.5) * (((yy / height - 0.5) ** 2 + (xx / width - 0.5) ** 2) * 2.0)
    image *= light[..., None]
    image += rng.normal(0, rng.uniform(1.0, 4.0), image.shape).astype(np.float32)

    view = _frame(rng, height, width)
    image = blend(np.zeros_like(image), image, view)
    mask &= view > 0.5
    if rng.random() < 0.3:
        overlay, cover = _scope_guide(rng, height, width)
        image = blend(image, overlay, cover)
        mask &= cover < 0.5
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.5))
    return np.asarray(out), mask
