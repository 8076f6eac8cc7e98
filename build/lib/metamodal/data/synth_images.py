"""Product images for the synthetic shop, rendered with PIL.

What is drawn: the category's shape (shared with text), the item's colour and pattern
(visible only here), and a nuisance background. Material, style and collection are never
drawn, so an image-only model cannot see them.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "orange": (235, 140, 30),
    "yellow": (230, 210, 40),
    "green": (50, 160, 60),
    "teal": (30, 150, 150),
    "blue": (40, 70, 200),
    "purple": (130, 50, 170),
    "black": (25, 25, 25),
}
PATTERNS = ("solid", "stripes", "dots", "checks")
SHAPES = ("circle", "square", "triangle", "hexagon", "star", "diamond")


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(math.pi / 4 + k * math.pi / 2) for k in range(4)]
        return [(cx + r * math.cos(a + rot), cy + r * math.sin(a + rot)) for a in pts]
    if shape == "diamond":
        return [
            (cx + r * math.cos(a + rot) * (0.7 if k % 2 else 1.0), cy + r * math.sin(a + rot))
            for k, a in enumerate([0, math.pi / 2, math.pi, 3 * math.pi / 2])
        ]
    if shape == "triangle":
        return [
            (cx + r * math.cos(a + rot), cy + r * math.sin(a + rot))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if shape == "hexagon":
        return [
            (cx + r * math.cos(k * math.pi / 3 + rot), cy + r * math.sin(k * math.pi / 3 + rot))
            for k in range(6)
        ]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5 + rot
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    raise ValueError(shape)


def _pattern_layer(
    pattern: str, size: int, colour: tuple[int, int, int], rng: np.random.Generator
) -> Image.Image:
    """The shape's fill: the colour with a pattern in a lighter or darker shade."""
    layer = Image.new("RGB", (size, size), colour)
    if pattern == "solid":
        return layer
    draw = ImageDraw.Draw(layer)
    shade = tuple(int(c * 0.45) if sum(colour) > 200 else min(255, c + 150) for c in colour)
    step = int(rng.integers(6, 9))
    if pattern == "stripes":
        for x in range(-size, 2 * size, step):
            draw.line([(x, 0), (x + size, size)], fill=shade, width=max(2, step // 3))
    elif pattern == "dots":
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                draw.ellipse([x - 1.6, y - 1.6, x + 1.6, y + 1.6], fill=shade)
    elif pattern == "checks":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=shade)
    return layer


def render(
    shape: str, colour: str, pattern: str, rng: np.random.Generator, size: int = 64
) -> Image.Image:
    """One product photo: pastel noisy background, the shape in its colour and pattern."""
    bg = np.clip(
        rng.integers(170, 250, size=3)[None, None, :] + rng.normal(0, 10, (size, size, 3)), 0, 255
    )
    img = Image.fromarray(bg.astype(np.uint8), "RGB")
    jitter = rng.normal(0, 12, 3)
    rgb = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[colour], jitter, strict=True))
    fill = _pattern_layer(pattern, size, rgb, rng)
    mask = Image.new("L", (size, size), 0)
    cx, cy = size / 2 + rng.normal(0, 2), size / 2 + rng.normal(0, 2)
    r = size * rng.uniform(0.32, 0.42)
    rot = rng.uniform(-0.25, 0.25)
    d = ImageDraw.Draw(mask)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        d.polygon(_polygon(shape, cx, cy, r, rot), fill=255)
    img.paste(fill, (0, 0), mask)
    return img
