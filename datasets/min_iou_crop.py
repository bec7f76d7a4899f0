"""SSD's random patch sampling ("min-IoU crop") as an albumentations transform.

For each image one sampling mode is drawn uniformly:

* keep the whole image (``keep_original=True``);
* a patch whose IoU (Jaccard overlap) with at least one ground-truth box is at least
  ``t`` for ``t`` in ``min_ious`` (SSD: 0.1, 0.3, 0.5, 0.7, 0.9);
* a patch without IoU constraint (``unconstrained=True``).

A candidate patch has sides drawn uniformly in ``[min_scale, 1]`` of the image's
(SSD: 0.3) and an aspect ratio ``height / width`` inside ``aspect_ratio_range`` (SSD:
0.5 to 2); it must also contain the centre of at least one ground-truth box, so an
annotated image never loses all its objects. Up to ``max_trials`` candidates are drawn;
if none qualifies the whole image is kept. An image without boxes gets an unconstrained
patch.

A box is kept if and only if its centre lies strictly inside the patch; kept boxes are
clipped to the patch and shifted to its origin. Albumentations' own crops keep boxes by
visible area instead, which is why this transform exists.

Box convention inside albumentations: ``[N, 4+]`` normalised ``x1, y1, x2, y2`` (extra
columns carry the label fields and are dropped or kept together with their box). After a
call, ``transform.params["crop"]`` is the patch ``(x1, y1, x2, y2)`` in integer input
pixels and ``transform.params["min_iou"]`` the IoU threshold it satisfies (``None`` when
the whole image was kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from albumentations.core.transforms_interface import DualTransform

SSD_MIN_IOUS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


def box_iou_with_patch(boxes: np.ndarray, patch: tuple[float, float, float, float]) -> np.ndarray:
    """IoU of each box with one patch.

    Args:
        boxes: ``[N, 4]`` ``x1, y1, x2, y2`` pixels.
        patch: ``(x1, y1, x2, y2)`` pixels.

    Returns:
        float64 ``[N]``.
    """
    px1, py1, px2, py2 = patch
    iw = np.clip(np.minimum(boxes[:, 2], px2) - np.maximum(boxes[:, 0], px1), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], py2) - np.maximum(boxes[:, 1], py1), 0, None)
    inter = iw * ih
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = box_area + (px2 - px1) * (py2 - py1) - inter
    return inter / np.maximum(union, 1e-12)


def centres_inside(boxes: np.ndarray, patch: tuple[float, float, float, float]) -> np.ndarray:
    """bool ``[N]``: whether each box's centre lies strictly inside the patch (pixels)."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > patch[0]) & (cx < patch[2]) & (cy > patch[1]) & (cy < patch[3])


class MinIoURandomCrop(DualTransform):
    """SSD's patch sampling; see the module docstring for the algorithm.

    Args:
        min_ious: the IoU thresholds, each in ``(0, 1]``.
        keep_original: include "keep the whole image" among the modes.
        unconstrained: include "any patch" among the modes.
        min_scale: smallest patch side as a fraction of the image side, in ``(0, 1]``.
        aspect_ratio_range: allowed ``height / width`` of the patch in pixels.
        max_trials: candidates drawn before falling back to the whole image.
        p: probability of applying the transform.

    Targets:
        image, bboxes
    """

    def __init__(
        self,
        min_ious: Sequence[float] = SSD_MIN_IOUS,
        *,
        keep_original: bool = True,
        unconstrained: bool = True,
        min_scale: float = 0.3,
        aspect_ratio_range: tuple[float, float] = (0.5, 2.0),
        max_trials: int = 50,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if any(not 0.0 < t <= 1.0 for t in min_ious):
            raise ValueError(f"min_ious must lie in (0, 1], got {tuple(min_ious)}")
        if not min_ious and not keep_original and not unconstrained:
            raise ValueError("no sampling mode left: give min_ious or enable another mode")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must lie in (0, 1], got {min_scale}")
        low, high = aspect_ratio_range
        if not 0.0 < low <= high:
            raise ValueError(
                "aspect_ratio_range must be (low, high) with 0 < low <= high, "
                f"got {aspect_ratio_range}"
            )
        if max_trials < 1:
            raise ValueError(f"max_trials must be at least 1, got {max_trials}")
        self.min_ious = tuple(float(t) for t in min_ious)
        self.keep_original = keep_original
        self.unconstrained = unconstrained
        self.min_scale = float(min_scale)
        self.aspect_ratio_range = (float(low), float(high))
        self.max_trials = int(max_trials)

    def _modes(self) -> list[float | None]:
        """``None`` keeps the image, ``0.0`` is an unconstrained patch."""
        modes: list[float | None] = [None] if self.keep_original else []
        modes += list(self.min_ious)
        if self.unconstrained:
            modes.append(0.0)
        return modes

    def _candidate(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        w = max(1, int(self.py_random.uniform(self.min_scale * width, width)))
        h = max(1, int(self.py_random.uniform(self.min_scale * height, height)))
        low, high = self.aspect_ratio_range
        if not low <= h / w <= high:
            return None
        left = int(self.py_random.uniform(0, width - w))
        top = int(self.py_random.uniform(0, height - h))
        return left, top, left + w, top + h

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """Draw the mode and the patch.

        Returns:
            ``crop`` ``(x1, y1, x2, y2)`` in input pixels and ``min_iou`` (``None`` when the
            whole image is kept).
        """
        height, width = params["shape"][:2]
        whole = {"crop": (0, 0, width, height), "min_iou": None}
        mode = self.py_random.choice(self._modes())
        if mode is None:
            return whole
        normalised = np.asarray(data.get("bboxes", np.zeros((0, 4))), dtype=np.float64)
        boxes = normalised[:, :4] * np.array([width, height, width, height], dtype=np.float64)
        for _ in range(self.max_trials):
            patch = self._candidate(height, width)
            if patch is None:
                continue
            if len(boxes) == 0:
                return {"crop": patch, "min_iou": 0.0}
            if not centres_inside(boxes, patch).any():
                continue
            if box_iou_with_patch(boxes, patch).max() >= mode:
                return {"crop": patch, "min_iou": mode}
        return whole

    def apply(
        self, img: np.ndarray, crop: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any
    ) -> np.ndarray:
        x1, y1, x2, y2 = crop
        return np.ascontiguousarray(img[y1:y2, x1:x2])

    def apply_to_bboxes(
        self,
        bboxes: np.ndarray,
        crop: tuple[int, int, int, int] = (0, 0, 0, 0),
        shape: tuple[int, ...] = (0, 0),
        **params: Any,
    ) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        height, width = shape[:2]
        x1, y1, x2, y2 = crop
        pixels = bboxes[:, :4] * np.array([width, height, width, height], dtype=np.float64)
        keep = centres_inside(pixels, (x1, y1, x2, y2))
        kept = pixels[keep]
        kept[:, [0, 2]] = np.clip(kept[:, [0, 2]], x1, x2) - x1
        kept[:, [1, 3]] = np.clip(kept[:, [1, 3]], y1, y2) - y1
        out = bboxes[keep].copy()
        out[:, :4] = kept / np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1], dtype=np.float64)
        return out
