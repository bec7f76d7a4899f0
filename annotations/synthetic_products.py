"""Procedurally drawn shelf products: one painter per class, each making an RGBA sprite.

Every class keeps one silhouette, colour scheme and label text, so a detector can learn
it from a few hundred images; each instance varies in size, aspect, colour (a few
percent per channel), brightness, shading and small print. Sprites are drawn at
``SUPERSAMPLE`` times their size and reduced, which anti-aliases edges and text; the
alpha channel is the product's silhouette (``alpha >= 128`` counts as the product when
occlusion is measured).

Only Pillow's built-in font is used, so the drawings depend on no downloaded data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 2
Rgb = tuple[int, int, int]
Painter = Callable[[ImageDraw.ImageDraw, np.random.Generator, int, int], None]


@dataclass(frozen=True)
class ProductKind:
    """How one kind of product looks and stands on a shelf.

    Attributes:
        name: the VOC class name (distractors are drawn but never annotated).
        aspect: range of width / height.
        height: range of the product's height as a fraction of the shelf's clearance.
        shading: ``"cylinder"`` (vertical highlight, dark sides), ``"flat"`` (a light
            gradient across a box) or ``"pillow"`` (a bag bulging in the middle).
        paint: draws the product into a transparent ``width x height`` image.
        annotated: False for distractors (background clutter that looks like a product).
    """

    name: str
    aspect: tuple[float, float]
    height: tuple[float, float]
    shading: str
    paint: Painter
    annotated: bool = True


@functools.lru_cache(maxsize=256)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, size))


def _rgb(values: np.ndarray) -> Rgb:
    r, g, b = np.clip(values, 0, 255).astype(int).tolist()
    return r, g, b


def _jitter(rng: np.random.Generator, rgb: Rgb, spread: float = 0.05) -> Rgb:
    """The colour with a shared brightness change and a smaller per-channel one."""
    gain = 1.0 + rng.normal(0.0, spread) + rng.normal(0.0, spread / 2, 3)
    return _rgb(np.asarray(rgb) * gain)


def _scale(rgb: Rgb, factor: float) -> Rgb:
    return _rgb(np.asarray(rgb) * factor)


def draw_fitted_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    box: tuple[float, float, float, float],
    fill: Rgb,
    bold: bool = True,
) -> None:
    """Draw ``text`` centred in ``box`` (x1, y1, x2, y2), as large as fits.

    Text that would be under 6 pixels high is not drawn (it would be unreadable mush).
    """
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    size = int(min(height * 0.85, width / (0.62 * len(text))))
    if size < 6:
        return
    font = _font(size)
    fitted = int(size * min(1.0, 0.92 * width / max(1.0, font.getlength(text))))
    if fitted < 6:
        return
    font = _font(fitted)
    stroke = max(0, fitted // 14) if bold else 0
    draw.text(
        ((x1 + x2) / 2, (y1 + y2) / 2),
        text,
        font=font,
        fill=fill,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=fill,
    )


def _fine_print(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    box: tuple[float, float, float, float],
    fill: Rgb,
    lines: int,
) -> None:
    """Thin lines of ragged length that read as small print at display size."""
    x1, y1, x2, y2 = box
    step = (y2 - y1) / lines
    thickness = max(1, int(step * 0.35))
    for i in range(lines):
        y = y1 + step * (i + 0.5)
        end = x1 + (x2 - x1) * rng.uniform(0.55, 1.0)
        draw.line([(x1, y), (end, y)], fill=fill, width=thickness)


def _paint_cereal_box(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    orange = _jitter(rng, (232, 112, 28))
    yellow = _jitter(rng, (252, 206, 52))
    brown = _jitter(rng, (104, 48, 18))
    front = w - max(2, int(w * 0.12))
    d.rectangle([0, 0, w - 1, h - 1], fill=orange)
    d.rectangle([front, 0, w - 1, h - 1], fill=_scale(orange, 0.68))
    d.rectangle([0, 0, w - 1, max(2, int(h * 0.025))], fill=_scale(orange, 1.15))
    d.rectangle([0, int(h * 0.09), front - 1, int(h * 0.31)], fill=yellow)
    draw_fitted_text(d, "OATS", (0, h * 0.10, front, h * 0.30), brown)
    flavour = ("HONEY", "CLASSIC", "CRUNCHY", "BERRY")[int(rng.integers(4))]
    draw_fitted_text(d, flavour, (front * 0.15, h * 0.33, front * 0.85, h * 0.41), (250, 244, 230))
    cx, cy = front / 2, h * 0.68
    rx, ry = front * 0.36, h * 0.09
    for _ in range(9):
        px = cx + rng.uniform(-0.8, 0.8) * rx
        py = cy - rng.uniform(0.1, 0.9) * ry
        r = rx * rng.uniform(0.13, 0.2)
        d.ellipse([px - r, py - r * 0.8, px + r, py + r * 0.8], fill=(214, 150, 64), outline=brown)
    d.chord([cx - rx, cy - ry, cx + rx, cy + ry * 1.6], 0, 180, fill=(246, 246, 240))
    if rng.random() < 0.5:
        r = front * 0.13
        bx, by = front - r * 1.3, h * 0.45
        d.ellipse([bx - r, by - r, bx + r, by + r], fill=(206, 28, 36))
    _fine_print(d, rng, (front * 0.08, h * 0.86, front * 0.9, h * 0.97), _scale(orange, 0.6), 3)
    d.rectangle([0, 0, w - 1, h - 1], outline=_scale(orange, 0.55), width=max(1, w // 50))


def _paint_soda_can(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    red = _jitter(rng, (204, 22, 34))
    silver = _jitter(rng, (204, 204, 210), 0.03)
    top, bottom = h * 0.08, h - h * 0.05
    d.polygon([(w * 0.14, 0), (w * 0.86, 0), (w, top), (0, top)], fill=silver)
    d.rectangle([0, top, w - 1, bottom], fill=red)
    d.polygon([(0, bottom), (w, bottom), (w * 0.88, h), (w * 0.12, h)], fill=silver)
    phase = rng.uniform(0, math.pi)
    xs = np.linspace(0, w, 13)
    upper = [(x, h * 0.56 + h * 0.04 * math.sin(phase + x / w * 2 * math.pi)) for x in xs]
    lower = [(x, y + h * 0.07) for x, y in reversed(upper)]
    d.polygon(upper + lower, fill=(250, 250, 250))
    draw_fitted_text(d, "COLA", (w * 0.06, h * 0.2, w * 0.94, h * 0.46), (250, 250, 250))
    variant = ("ZERO", "CLASSIC", "LIGHT")[int(rng.integers(3))]
    draw_fitted_text(
        d, variant, (w * 0.2, h * 0.72, w * 0.8, h * 0.82), (250, 236, 236), bold=False
    )


def _paint_water_bottle(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    water = _jitter(rng, (172, 214, 240), 0.03)
    cap = _jitter(rng, (24, 70, 172))
    blue = _jitter(rng, (30, 112, 212))
    d.rectangle([w * 0.32, 0, w * 0.68, h * 0.07], fill=cap)
    d.rectangle([w * 0.28, h * 0.07, w * 0.72, h * 0.09], fill=_scale(cap, 0.8))
    d.polygon(
        [
            (w * 0.36, h * 0.09),
            (w * 0.64, h * 0.09),
            (w * 0.64, h * 0.14),
            (w, h * 0.27),
            (w, h * 0.97),
            (w * 0.88, h),
            (w * 0.12, h),
            (0, h * 0.97),
            (0, h * 0.27),
            (w * 0.36, h * 0.14),
        ],
        fill=(*water, 236),
    )
    rib = _scale(water, 1.12)
    for y in (0.31, 0.35, 0.78, 0.84, 0.90):
        d.line([(w * 0.04, h * y), (w * 0.96, h * y)], fill=rib, width=max(1, h // 120))
    d.rectangle([0, h * 0.42, w - 1, h * 0.66], fill=(242, 247, 252))
    d.rectangle([0, h * 0.62, w - 1, h * 0.66], fill=blue)
    draw_fitted_text(d, "AQUA", (w * 0.04, h * 0.45, w * 0.96, h * 0.56), blue)
    _fine_print(d, rng, (w * 0.2, h * 0.565, w * 0.8, h * 0.61), _scale(blue, 1.3), 2)


def _paint_chips_bag(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    green = _jitter(rng, (38, 150, 62))
    yellow = _jitter(rng, (250, 214, 44))
    red = _jitter(rng, (212, 30, 30))
    crimp = h * 0.08
    teeth = max(6, w // (8 * SUPERSAMPLE))
    top = [(w * i / teeth, 0.0 if i % 2 else crimp * 0.35) for i in range(teeth + 1)]
    bottom = [(w * i / teeth, h - (0.0 if i % 2 else crimp * 0.35)) for i in range(teeth, -1, -1)]
    right = [(w * 0.97, h * 0.3), (w * 0.95, h * 0.7)]
    left = [(w * 0.05, h * 0.7), (w * 0.03, h * 0.3)]
    d.polygon(top + right + bottom + left, fill=green)
    dark = _scale(green, 0.7)
    for i in range(1, teeth * 2):
        x = w * i / (teeth * 2)
        d.line([(x, crimp * 0.4), (x, crimp)], fill=dark, width=1)
        d.line([(x, h - crimp), (x, h - crimp * 0.4)], fill=dark, width=1)
    d.line([(0, crimp), (w, crimp)], fill=dark, width=max(1, h // 100))
    d.line([(0, h - crimp), (w, h - crimp)], fill=dark, width=max(1, h // 100))
    d.ellipse(
        [w * 0.1, h * 0.2, w * 0.9, h * 0.52], fill=yellow, outline=red, width=max(1, w // 60)
    )
    draw_fitted_text(d, "CHIPS", (w * 0.17, h * 0.27, w * 0.83, h * 0.45), red)
    for _ in range(3):
        cx, cy = w * rng.uniform(0.25, 0.75), h * rng.uniform(0.64, 0.8)
        rx, ry = w * rng.uniform(0.12, 0.18), h * rng.uniform(0.06, 0.09)
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=(238, 192, 92), outline=(180, 120, 40))
    flavour = ("SALTED", "PAPRIKA", "ONION")[int(rng.integers(3))]
    draw_fitted_text(
        d, flavour, (w * 0.2, h * 0.53, w * 0.8, h * 0.61), (250, 250, 240), bold=False
    )


def _paint_milk_carton(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    white = _jitter(rng, (242, 242, 236), 0.02)
    blue = _jitter(rng, (40, 90, 206))
    side = w - max(2, int(w * 0.16))
    roof = h * 0.2
    d.rectangle([w * 0.1, 0, w * 0.9, h * 0.05], fill=_scale(white, 0.9))
    d.polygon([(0, roof), (w * 0.1, h * 0.05), (w * 0.9, h * 0.05), (side, roof)], fill=white)
    d.polygon([(side, roof), (w * 0.9, h * 0.05), (w, roof)], fill=_scale(white, 0.7))
    d.rectangle([0, roof, side, h - 1], fill=white)
    d.rectangle([side, roof, w - 1, h - 1], fill=_scale(white, 0.78))
    d.line([(0, roof), (side, roof)], fill=_scale(white, 0.8), width=max(1, h // 150))
    d.rectangle([0, h * 0.46, side, h * 0.68], fill=blue)
    d.rectangle([side, h * 0.46, w - 1, h * 0.68], fill=_scale(blue, 0.75))
    draw_fitted_text(d, "MILK", (w * 0.04, h * 0.48, side - w * 0.04, h * 0.66), (250, 250, 250))
    cx, cy, r = side / 2, h * 0.33, min(side, h) * 0.09
    d.polygon([(cx, cy - r * 1.8), (cx + r, cy), (cx - r, cy)], fill=blue)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=blue)
    _fine_print(d, rng, (side * 0.1, h * 0.75, side * 0.9, h * 0.92), _scale(blue, 1.4), 3)


def _paint_soap_bottle(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    purple = _jitter(rng, (150, 58, 176))
    pump = _jitter(rng, (236, 236, 242), 0.02)
    collar = _scale(purple, 0.55)
    d.rectangle([w * 0.08, h * 0.02, w * 0.6, h * 0.065], fill=pump)
    d.rectangle([w * 0.44, 0, w * 0.74, h * 0.1], fill=pump)
    d.rectangle([w * 0.52, h * 0.1, w * 0.66, h * 0.2], fill=_scale(pump, 0.85))
    d.rectangle([w * 0.3, h * 0.2, w * 0.88, h * 0.27], fill=collar)
    d.rounded_rectangle([0, h * 0.26, w - 1, h - 1], radius=w * 0.22, fill=purple)
    d.ellipse([w * 0.1, h * 0.46, w * 0.9, h * 0.8], fill=(250, 244, 250))
    draw_fitted_text(d, "SOAP", (w * 0.18, h * 0.55, w * 0.82, h * 0.7), _scale(purple, 0.8))
    light = _scale(purple, 1.45)
    for _ in range(4):
        bx, by = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.3, 0.42)
        r = w * rng.uniform(0.04, 0.08)
        d.ellipse([bx - r, by - r, bx + r, by + r], outline=light, width=max(1, w // 50))


def _paint_jar(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    content = _jitter(rng, (116, 62, 28), 0.08)
    lid = _jitter(rng, (196, 160, 58))
    d.rectangle([w * 0.06, 0, w * 0.94, h * 0.16], fill=lid)
    for i in range(1, 6):
        x = w * (0.06 + 0.88 * i / 6)
        d.line([(x, 0), (x, h * 0.16)], fill=_scale(lid, 0.75), width=1)
    d.rounded_rectangle([0, h * 0.15, w - 1, h - 1], radius=w * 0.12, fill=content)
    d.rectangle([0, h * 0.36, w - 1, h * 0.72], fill=(238, 228, 198))
    word = ("JAM", "HONEY", "PESTO")[int(rng.integers(3))]
    draw_fitted_text(d, word, (w * 0.1, h * 0.4, w * 0.9, h * 0.6), (120, 20, 30), bold=False)


PRODUCTS: tuple[ProductKind, ...] = (
    ProductKind("cereal_box", (0.62, 0.78), (0.72, 0.93), "flat", _paint_cereal_box),
    ProductKind("soda_can", (0.52, 0.62), (0.45, 0.58), "cylinder", _paint_soda_can),
    ProductKind("water_bottle", (0.3, 0.37), (0.72, 0.92), "cylinder", _paint_water_bottle),
    ProductKind("chips_bag", (0.75, 0.95), (0.55, 0.78), "pillow", _paint_chips_bag),
    ProductKind("milk_carton", (0.42, 0.52), (0.68, 0.88), "flat", _paint_milk_carton),
    ProductKind("soap_bottle", (0.4, 0.5), (0.55, 0.75), "cylinder", _paint_soap_bottle),
)
DISTRACTORS: tuple[ProductKind, ...] = (
    ProductKind("jar", (0.75, 0.95), (0.35, 0.5), "cylinder", _paint_jar, annotated=False),
)


@functools.lru_cache(maxsize=512)
def _profile(shading: str, width: int, height: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel gain and highlight of a shading kind, ``[height, width, 1]`` each."""
    x = (np.arange(width, dtype=np.float32) + 0.5) / width
    y = (np.arange(height, dtype=np.float32) + 0.5) / height
    if flip:
        x = x[::-1]
    if shading == "cylinder":
        gain = 0.62 + 0.42 * np.sin(np.pi * x) ** 0.7
        highlight = 0.55 * np.exp(-(((x - 0.3) / 0.07) ** 2))
        return gain[None, :, None], highlight[None, :, None]
    if shading == "pillow":
        gain = 0.72 + 0.34 * np.sin(np.pi * x)[None, :] * np.sin(np.pi * y)[:, None] ** 0.5
        highlight = 0.25 * np.exp(-(((x - 0.35) / 0.1) ** 2))[None, :] * np.ones_like(y)[:, None]
        return gain[..., None], highlight[..., None]
    gain = 1.06 - 0.14 * x
    return gain[None, :, None], np.zeros((1, 1, 1), np.float32)


def draw_product(
    kind: ProductKind,
    rng: np.random.Generator,
    width: int,
    height: int,
    brightness: float = 1.0,
) -> Image.Image:
    """Draw one product as an RGBA sprite of ``width x height`` pixels.

    Args:
        kind: what to draw.
        rng: the source of this instance's variation.
        width, height: the sprite's size in pixels (each at least 4).
        brightness: overall light on the product (products at the back of a shelf are
            in its shadow, below 1).

    Returns:
        The sprite; alpha is 0 outside the product's silhouette.
    """
    if width < 4 or height < 4:
        raise ValueError(f"product sprites need at least 4x4 pixels, got {width}x{height}")
    big = Image.new("RGBA", (width * SUPERSAMPLE, height * SUPERSAMPLE), (0, 0, 0, 0))
    kind.paint(ImageDraw.Draw(big), rng, big.width, big.height)
    sprite = np.asarray(big.reduce(SUPERSAMPLE), dtype=np.float32)
    gain, highlight = _profile(kind.shading, width, height, bool(rng.random() < 0.5))
    rgb = sprite[..., :3] * (gain * brightness)
    rgb += highlight * (255.0 - np.minimum(rgb, 255.0))
    out = np.empty(sprite.shape, dtype=np.uint8)
    out[..., :3] = np.clip(rgb, 0, 255)
    out[..., 3] = sprite[..., 3]
    return Image.fromarray(out, "RGBA")
