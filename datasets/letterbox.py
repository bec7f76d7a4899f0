"""The final resize to the model's square input as an albumentations transform.

``ResizeToInput`` applies ``datasets.geometry`` (the one geometry and pixel resize that
the service also uses) inside an augmentation pipeline, moving the boxes with the image;
``datasets.augment`` ends every preset with it.

Box convention inside albumentations: ``[N, 4+]`` normalised ``x1, y1, x2, y2`` (extra
columns carry the label fields and are passed through). In pixels a box moves as
``input = original * scale + pad`` (see ``datasets.geometry``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from albumentations.core.transforms_interface import DualTransform

from prodet.datasets.geometry import (
    ResizeGeometry,
    ResizeMode,
    check_resize_mode,
    resize_geometry,
    resize_to_input,
)


class ResizeToInput(DualTransform):
    """Resize (and for letterbox pad) to ``size x size`` exactly as the service does.

    Args:
        size: side of the square output.
        mode: ``"stretch"`` or ``"letterbox"``.
        fill: per-channel pad value in ``0..255`` pixel units (letterbox only).

    Targets:
        image, bboxes
    """

    def __init__(self, size: int, mode: ResizeMode, fill: Sequence[float]) -> None:
        super().__init__(p=1.0)
        check_resize_mode(mode)
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        if len(fill) != 3:
            raise ValueError(f"fill needs one value per RGB channel, got {len(fill)}")
        self.size = size
        self.mode = mode
        self.fill = tuple(float(v) for v in fill)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """The sample's ``geometry`` (``datasets.geometry.ResizeGeometry``)."""
        height, width = params["shape"][:2]
        return {"geometry": resize_geometry(width, height, self.size, self.mode)}

    def apply(self, img: np.ndarray, geometry: ResizeGeometry, **params: Any) -> np.ndarray:
        return resize_to_input(img, geometry, self.fill)

    def apply_to_bboxes(
        self, bboxes: np.ndarray, geometry: ResizeGeometry, **params: Any
    ) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        # Normalised x times the original width is the pixel x; times sx it is new_w.
        new_w, new_h = geometry.resized
        left, top = geometry.pad
        out_w, out_h = geometry.input_size
        out = bboxes.copy()
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * new_w + left) / out_w
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * new_h + top) / out_h
        return out
