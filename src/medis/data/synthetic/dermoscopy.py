"""Synthetic dermoscopy images with exact lesion masks (stand-ins for ISIC 2016/2017/2018 Task 1).

What is drawn (docs/data.md): skin-toned background with multi-octave texture, pixel noise
and an illumination gradient; vignetting and, in some images, the black circular frame of a
dermatoscope; a lesion whose outline is a star-shaped radial-harmonic curve with random
irregularity, aspect and rotation plus fine jaggedness; colour variegation from a palette of
browns, black, red and a blue-white veil mixed by smooth noise; a faint pigment network; a soft
border of random width and a lesion CONTRAST that is random, so that global thresholding fails.
Artefacts that are not lesion: hairs, ruler marks, bubbles, small faint freckles.

The mask is the outline's interior (one region without holes, the ISIC 2018 rule), restricted to
the visible field of view, exact by construction.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from medis.data.synthetic.shapes import StarShape, blend, random_curves, smooth_noise, soft_edge

# RGB palette of lesion colours: light, mid and dark brown, black, red, blue-white veil.
LESION_PALETTE = np.array(
    [[186, 134, 96], [140, 92, 62], [96, 60, 42], [52, 40, 40], [172, 84, 80], [138, 148, 172]],
    np.float32,
)
PALETTE_ODDS = np.array([0.26, 0.26, 0.2, 0.1, 0.1, 0.08])


def _skin(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Skin background: base tone, texture, redness blotches, illumination gradient. (H,W,3) float."""
    tone = rng.uniform([200, 150, 125], [240, 190, 165]).astype(np.float32)
    texture = smooth_noise(rng, height, width, cells=3, octaves=5, persistence=0.55)
    redness = smooth_noise(rng, height, width, cells=2, octaves=3)
    skin = tone * (1.0 + 0.045 * texture[..., None])
    skin[..., 1:] -= rng.uniform(0, 10) * np.clip(redness, 0, None)[..., None]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * (xx / width - 0.5) + np.sin(direction) * (yy / height - 0.5))
    return skin * (1.0 + rng.uniform(0.0, 0.25) * ramp)[..., None]


def _lesion_colour(rng: np.random.Generator, field: np.ndarray) -> np.ndarray:
    """Variegated lesion colour: 2-4 palette colours mixed by smooth noise, darker centre. (H,W,3)."""
    height, width = field.shape
    chosen = rng.choice(len(LESION_PALETTE), size=int(rng.integers(2, 5)), replace=False, p=PALETTE_ODDS)
    logits = np.stack([smooth_noise(rng, height, width, cells=2.5, octaves=3) for _ in chosen])
    logits *= rng.uniform(1.5, 4.0)
    weights = np.exp(logits - logits.max(0))
    weights /= weights.sum(0)
    colour = np.einsum("khw,kc->hwc", weights, LESION_PALETTE[chosen])
    centre_dark = rng.uniform(0.0, 0.3) * np.clip(1.0 - field, 0, 1)
    return colour * (1.0 - centre_dark[..., None])


def _pigment_network(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A faint reticular pattern in [0, 1]: dark lines of a warped grid. (H,W)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(5.0, 9.0) * max(height, width) / 256.0
    a = np.sin(2 * np.pi * xx / period + 4.0 * smooth_noise(rng, height, width, cells=5, octaves=3))
    b = np.sin(2 * np.pi * yy / period + 4.0 * smooth_noise(rng, height, width, cells=5, octaves=3))
    lines = np.clip(1.0 - np.minimum(np.abs(a), np.abs(b)) * 3.0, 0, 1)
    patchy = np.clip(smooth_noise(rng, height, width, cells=3, octaves=2) + 0.3, 0, 1)
    return lines * patchy


def _ruler(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Ruler ticks along one image edge: a coverage map (H,W)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    step = max(3, int(round(min(height, width) * rng.uniform(0.025, 0.04))))
    offset = int(rng.integers(2, max(3, min(height, width) // 12)))
    along_x = rng.random() < 0.5
    span = width if along_x else height
    for i, pos in enumerate(range(int(rng.integers(0, step)), span, step)):
        length = step * (2.0 if i % 5 == 0 else 1.0)
        if along_x:
            draw.line([(pos, offset), (pos, offset + length)], fill=255, width=1)
        else:
            draw.line([(offset, pos), (offset + length, pos)], fill=255, width=1)
    return np.asarray(canvas, np.float32) / 255.0


def _bubbles(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Air bubbles of immersion fluid: bright rims and a highlight. Returns the new image."""
    height, width, _ = image.shape
    rim = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(rim)
    for _ in range(int(rng.integers(1, 5))):
        r = rng.uniform(0.02, 0.07) * min(height, width)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=200, width=max(1, int(r / 6)))
        draw.ellipse([cx - r * 0.5, cy - r * 0.6, cx - r * 0.2, cy - r * 0.3], fill=255)
    alpha = np.asarray(rim.filter(ImageFilter.GaussianBlur(0.8)), np.float32) / 255.0
    return blend(image, np.float32(250.0), 0.7 * alpha)


def _field_of_view(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Visible disc of a dermatoscope (1 inside, 0 under the black frame), softly edged. (H,W)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = rng.uniform(0.47, 0.6) * np.hypot(height, width)
    dist = np.hypot(yy - height / 2 + rng.normal(0, 0.03 * height), xx - width / 2 + rng.normal(0, 0.03 * width))
    return soft_edge(dist / radius, 0.02)


def render_dermoscopy(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one dermoscopy image and its exact lesion mask.

    Returns:
        (image ``uint8`` (height, width, 3), mask ``bool`` (height, width)).
    """
    short = min(height, width)
    image = _skin(rng, height, width)

    for _ in range(int(rng.integers(0, 4))):  # freckles: small faint spots that are not lesion
        spot = StarShape.random(rng, rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.01, 0.03) * short,
                                0.2, 0.0)
        image = blend(image, image * 0.82, 0.7 * soft_edge(spot.field(height, width), 0.3))

    shape = StarShape.random(
        rng,
        cy=height / 2 + rng.normal(0, 0.08 * height),
        cx=width / 2 + rng.normal(0, 0.08 * width),
        radius=rng.uniform(0.17, 0.42) * short,
        irregularity=rng.uniform(0.05, 0.45),
        jaggedness=rng.uniform(0.0, 0.015),
    )
    field = shape.field(height, width)
    mask = field < 1.0
    colour = _lesion_colour(rng, field)
    colour *= 1.0 - rng.uniform(0.0, 0.15) * _pigment_network(rng, height, width)[..., None]
    contrast = rng.uniform(0.25, 0.85)
    lesion = image + contrast * (colour - image)
    image = blend(image, lesion, soft_edge(field, rng.uniform(0.02, 0.3)))

    if rng.random() < 0.45:
        hairs = random_curves(rng, height, width, int(rng.integers(1, 14)), (0.15, 0.6), (1, 2), bend=0.35)
        image = blend(image, rng.uniform(25, 70, 3).astype(np.float32), 0.85 * hairs)
    if rng.random() < 0.15:
        image = blend(image, np.float32(40.0), 0.8 * _ruler(rng, height, width))
    if rng.random() < 0.15:
        image = _bubbles(rng, image)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radial = ((yy / height - 0.5) ** 2 + (xx / width - 0.5) ** 2) * 2.0
    image *= (1.0 - rng.uniform(0.05, 0.35) * radial)[..., None]
    if rng.random() < 0.25:
        view = _field_of_view(rng, height, width)
        image = blend(np.full_like(image, rng.uniform(5, 20)), image, view)
        mask &= view > 0.5

    image += rng.normal(0, rng.uniform(1.5, 5.0), image.shape).astype(np.float32)
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return np.asarray(out), mask
