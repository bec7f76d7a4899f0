"""The final resize to the model's square input, and its inverse for predictions.

Two modes:

* ``"stretch"``: resize ``W x H`` to ``size x size``, ignoring the aspect ratio (what
  the SSD paper does).
* ``"letterbox"``: scale the longer side to ``size`` keeping the aspect ratio, then pad
  the shorter side symmetrically (the extra pixel of an odd padding goes to the
  bottom/right) with a constant fill, usually the backbone's mean colour so the padding
  normalises to zero.

Both downscale with ``cv2.INTER_AREA`` and upscale with ``cv2.INTER_LINEAR``; a serving
path that resizes differently sees slightly different pixels.

Box mapping: boxes are ``x1, y1, x2, y2`` in 0-based continuous pixels (see
``annotations.schema``). A resize maps an original coordinate to
``out = orig * scale + pad`` per axis, with ``scale = (new_w / W, new_h / H)`` (the
rounded resized size, exactly what albumentations applies to normalised boxes) and
``pad = (left, top)``. ``boxes_to_original`` inverts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import albumentations as A
import cv2
import numpy as np
import torch

ResizeMode = Literal["stretch", "letterbox"]
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox")

BoxArray = TypeVar("BoxArray", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class ResizeGeometry:
    """How one ``width x height`` image lands in the ``size x size`` model input.

    Attributes:
        scale: ``(sx, sy)``, output pixels per original pixel along x and y.
        pad: ``(left, top)`` padding in output pixels (zero for ``"stretch"``).
        resized: ``(new_w, new_h)``, the image's size inside the output before padding.
        size: side of the square output.
    """

    scale: tuple[float, float]
    pad: tuple[int, int]
    resized: tuple[int, int]
    size: int


def check_resize_mode(mode: str) -> None:
    """Raise ``ValueError`` naming the valid modes unless ``mode`` is one of them."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")


def resize_geometry(height: int, width: int, size: int, mode: ResizeMode) -> ResizeGeometry:
    """The scale and padding that ``resize_transforms(size, mode, ...)`` applies.

    Args:
        height, width: the input image's size in pixels.
        size: side of the square output.
        mode: ``"stretch"`` or ``"letterbox"``.
    """
    check_resize_mode(mode)
    if height < 1 or width < 1 or size < 1:
        raise ValueError(f"sizes must be positive, got image {width}x{height} and size {size}")
    if mode == "stretch":
        return ResizeGeometry((size / width, size / height), (0, 0), (size, size), size)
    factor = size / max(height, width)
    new_h = max(1, round(height * factor))
    new_w = max(1, round(width * factor))
    pad = ((size - new_w) // 2, (size - new_h) // 2)
    return ResizeGeometry((new_w / width, new_h / height), pad, (new_w, new_h), size)


def resize_transforms(size: int, mode: ResizeMode, fill: Sequence[float]) -> list[A.BasicTransform]:
    """Albumentations steps that resize (and for letterbox pad) to ``size x size``.

    Args:
        size: side of the square output.
        mode: ``"stretch"`` or ``"letterbox"``.
        fill: per-channel pad value in ``0..255`` pixel units (letterbox only).
    """
    check_resize_mode(mode)
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if mode == "stretch":
        return [A.Resize(size, size, interpolation=cv2.INTER_LINEAR, area_for_downscale="image")]
    return [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_LINEAR, area_for_downscale="image"),
        A.PadIfNeeded(
            min_height=size,
            min_width=size,
            position="center",
            border_mode=cv2.BORDER_CONSTANT,
            fill=tuple(float(v) for v in fill),
        ),
    ]


def boxes_to_original(
    boxes: BoxArray,
    scale: tuple[float, float],
    pad: tuple[float, float],
    orig_size: tuple[int, int],
) -> BoxArray:
    """Map boxes predicted on the model input back to the original image.

    Args:
        boxes: ``[N, 4]`` ``x1, y1, x2, y2`` in model-input pixels (numpy or torch).
        scale: the target's ``"scale"``, ``(sx, sy)``.
        pad: the target's ``"pad"``, ``(left, top)``.
        orig_size: the target's ``"orig_size"``, ``(height, width)``.

    Returns:
        ``[N, 4]`` boxes in original 0-based pixels, clipped to the original image, same
        array type and dtype as ``boxes``.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
    sx, sy = scale
    if sx <= 0 or sy <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    px, py = pad
    height, width = orig_size
    offset = [px, py, px, py]
    factor = [sx, sy, sx, sy]
    limit = [width, height, width, height]
    if isinstance(boxes, torch.Tensor):
        mapped = (boxes - boxes.new_tensor(offset)) / boxes.new_tensor(factor)
        return torch.minimum(mapped.clamp(min=0), mapped.new_tensor(limit))
    mapped_np = (boxes - np.asarray(offset, dtype=boxes.dtype)) / np.asarray(factor, boxes.dtype)
    return np.clip(mapped_np, 0, np.asarray(limit, dtype=boxes.dtype)).astype(boxes.dtype)
