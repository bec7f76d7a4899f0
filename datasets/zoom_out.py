"""SSD's zoom-out ("expand") augmentation as an albumentations transform.

The image is placed at a random position on a larger canvas filled with a constant
colour (the backbone's mean, so the border normalises to zero), which turns every object
into a smaller one: SSD uses it to create the small-object examples its ``conv4_3``
features need. Albumentations has no transform that enlarges the canvas by a random
factor and places the image randomly, hence this one.

Box convention inside albumentations: ``[N, 4+]`` normalised ``x1, y1, x2, y2`` (extra
columns carry the label fields and are passed through). In pixels a box moves by exactly
the integer placement offset, ``x' = x + left``, ``y' = y + top``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from albumentations.core.transforms_interface import DualTransform


class ZoomOut(DualTransform):
    """Place the image on a ``ratio`` times larger constant-filled canvas.

    Args:
        max_ratio: the canvas side is ``floor(side * ratio)`` with ``ratio`` drawn
            uniformly from ``[1, max_ratio]`` (SSD: 4).
        fill: canvas colour, one value per channel in the image's pixel units
            (``0..255`` for ``uint8`` images).
        p: probability of applying the transform (SSD: 0.5).

    Targets:
        image, bboxes
    """

    def __init__(
        self, max_ratio: float = 4.0, fill: Sequence[float] = (0.0, 0.0, 0.0), p: float = 0.5
    ) -> None:
        super().__init__(p=p)
        if max_ratio < 1.0:
            raise ValueError(f"max_ratio must be >= 1 (1 disables zoom-out), got {max_ratio}")
        if len(fill) == 0:
            raise ValueError("fill needs one value per image channel, got an empty sequence")
        self.max_ratio = float(max_ratio)
        self.fill = tuple(float(v) for v in fill)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """Draw the ratio and the placement.

        Returns:
            ``canvas`` ``(height, width)`` and ``offset`` ``(left, top)`` in pixels.
        """
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(1.0, self.max_ratio)
        canvas_h = max(height, int(height * ratio))
        canvas_w = max(width, int(width * ratio))
        left = self.py_random.randint(0, canvas_w - width)
        top = self.py_random.randint(0, canvas_h - height)
        return {"canvas": (canvas_h, canvas_w), "offset": (left, top)}

    def apply(
        self,
        img: np.ndarray,
        canvas: tuple[int, int] = (0, 0),
        offset: tuple[int, int] = (0, 0),
        **params: Any,
    ) -> np.ndarray:
        height, width = img.shape[:2]
        channels = img.shape[2] if img.ndim == 3 else 1
        if channels > 4 or len(self.fill) not in (1, channels):
            raise ValueError(
                f"ZoomOut fill has {len(self.fill)} values for a {channels}-channel image; "
                "pass one value or one per channel (at most 4 channels)"
            )
        fill = self.fill * channels if len(self.fill) == 1 else self.fill
        left, top = offset
        bottom, right = canvas[0] - height - top, canvas[1] - width - left
        # OpenCV's border fill is ~80x faster than filling a numpy canvas and pasting.
        out = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=fill)
        return out.reshape(canvas[0], canvas[1], *img.shape[2:])

    def apply_to_bboxes(
        self,
        bboxes: np.ndarray,
        canvas: tuple[int, int] = (0, 0),
        offset: tuple[int, int] = (0, 0),
        shape: tuple[int, ...] = (0, 0),
        **params: Any,
    ) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        height, width = shape[:2]
        canvas_h, canvas_w = canvas
        left, top = offset
        out = bboxes.copy()
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * width + left) / canvas_w
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * height + top) / canvas_h
        return out
