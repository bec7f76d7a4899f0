"""Draw detections on an image with Pillow (``prodet predict``'s annotated PNGs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prodet.serve.postprocess import Detection

# The upload page (static/index.html) uses the same colours, by class id.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 31, 90),
    (0, 194, 255),
    (255, 176, 0),
    (124, 255, 79),
    (180, 107, 255),
    (255, 122, 0),
)


def class_color(class_id: int) -> tuple[int, int, int]:
    """The colour of class ``class_id`` (1-based object classes)."""
    return PALETTE[(class_id - 1) % len(PALETTE)]


def annotate(pixels: np.ndarray, detections: Sequence[Detection]) -> Image.Image:
    """The image with each detection's box and ``label score`` drawn on it.

    Args:
        pixels: ``uint8`` ``[H, W, 3]`` RGB, the image the boxes refer to.
        detections: boxes in ``pixels``' coordinates.

    Returns:
        A new RGB image; ``pixels`` is not modified.
    """
    image = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 300))
    font = ImageFont.load_default(size=max(12, line * 6))
    for det in detections:
        x1, y1, x2, y2 = det.box
        draw.rectangle(
            (x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)),
            outline=class_color(det.class_id),
            width=line,
        )
    # Labels after all boxes, best score last so that it stays readable where labels overlap.
    for det in reversed(detections):
        color = class_color(det.class_id)
        x1, y1 = det.box[:2]
        text = f"{det.label} {det.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        height = bottom - top + 2 * line
        label_top = y1 - height if y1 >= height else y1
        draw.rectangle(
            (x1, label_top, x1 + right - left + 2 * line, label_top + height), fill=color
        )
        draw.text((x1 + line, label_top + line - top), text, fill=(0, 0, 0), font=font)
    return image
