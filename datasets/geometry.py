"""The resize to the model's input and its inverse for boxes, written once for both sides.

Training's final resize (``datasets.letterbox``, inside every augmentation preset), the
evaluation's mapping of predictions back to the original image (``detection.engine``,
``export.onnx_evaluate``) and the service's pre- and post-processing (``serve.preprocess``,
``serve.postprocess``) all use this module, so a model is served exactly the pixels it was
evaluated on. It needs numpy and Pillow only (no torch, albumentations or OpenCV), so the
service can import it. ``datasets`` is the first stage that resizes.

Sizes are always given as ``(width, height)``, x before y, like boxes, ``scale`` and
``pad``. Two modes:

* ``"stretch"``: resize ``W x H`` to ``S x S``, ignoring the aspect ratio (what the SSD
  paper does).
* ``"letterbox"``: scale the longer side to ``S`` keeping the aspect ratio (the other side
  rounded to whole pixels), then pad the shorter side symmetrically (the extra pixel of an
  odd padding goes to the bottom/right) with a constant fill, usually the backbone's mean
  colour so the padding normalises to zero.

Pixels (``resize_to_input``) are resized with Pillow: an area average (``BOX``) when both
sides shrink, else bilinear (which also antialiases a shrinking side).

Box mapping: boxes are ``x1, y1, x2, y2`` in 0-based continuous pixels (see
``annotations.schema``). An original coordinate lands on the model input at
``input = original * scale + pad`` per axis, with ``scale = (new_w / W, new_h / H)`` (the
rounded resized size) and ``pad = (left, top)``. ``boxes_to_original`` inverts it.

Reduced decoding: a big JPEG need not be decoded in full to become an ``S x S`` input.
``decode_floor(S, mode)`` is the rule for the least it needs, as ``(shorter, longer)``
sides for ``annotations.image_decode.decode_image(min_sides=...)``: ``stretch`` scales
each side to ``S``, so both sides need ``S`` (the shorter side ``>= S``); ``letterbox``
scales the longer side to ``S``, so only that one does (``>= S``; the shorter side ends
at ``S * shorter / longer`` either way). Anything less would be enlarged again by the
resize. ``oversample`` asks for that many times more, for training presets whose random
crops zoom into part of the image (``TRAIN_OVERSAMPLE``). The pixels are then a reduced version
of the original: the service resizes the original's ``region`` of them to the geometry of
the original size (``resize_to_input(..., region=...)``), so boxes map back through the
original's geometry unchanged; training resizes the reduced image itself and composes
its geometry with the reduction (``through_reduction``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

ResizeMode = Literal["stretch", "letterbox"]
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox")
# Training decodes at least this many times the input size on the side that matters, so
# a random crop of half the image still has one source pixel per input pixel.
TRAIN_OVERSAMPLE = 2.0


@dataclass(frozen=True)
class ResizeGeometry:
    """How one ``width x height`` image lands in the model input.

    Attributes:
        original: ``(width, height)`` of the original image in pixels.
        input_size: ``(width, height)`` of the model input (``(S, S)`` from
            ``resize_geometry``; the original size for ``identity``).
        scale: ``(sx, sy)``, input pixels per original pixel along x and y.
        pad: ``(left, top)`` padding in input pixels (zero for ``"stretch"``).
        resized: ``(new_w, new_h)``, the image's size inside the input before padding.
    """

    original: tuple[int, int]
    input_size: tuple[int, int]
    scale: tuple[float, float]
    pad: tuple[int, int]
    resized: tuple[int, int]

    @classmethod
    def identity(cls, width: int, height: int) -> ResizeGeometry:
        """The geometry of an image used as it is (no resize, no padding)."""
        _check_sizes(width, height, 1)
        size = (width, height)
        return cls(size, size, (1.0, 1.0), (0, 0), size)


def check_resize_mode(mode: str) -> ResizeMode:
    """``mode`` as a ``ResizeMode``; ``ValueError`` naming the valid modes if it is none."""
    if mode == "stretch":
        return "stretch"
    if mode == "letterbox":
        return "letterbox"
    raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")


def _check_sizes(width: int, height: int, size: int) -> None:
    if width < 1 or height < 1 or size < 1:
        raise ValueError(
            f"sizes must be positive, got image {width}x{height} and input size {size}"
        )


def resize_geometry(width: int, height: int, size: int, mode: str) -> ResizeGeometry:
    """Where a ``width x height`` image lands in the ``size x size`` model input.

    Args:
        width, height: the original image's size in pixels.
        size: side of the square model input.
        mode: ``"stretch"`` or ``"letterbox"``.
    """
    check_resize_mode(mode)
    _check_sizes(width, height, size)
    square = (size, size)
    if mode == "stretch":
        return ResizeGeometry(
            (width, height), square, (size / width, size / height), (0, 0), square
        )
    factor = size / max(width, height)
    new_w = max(1, round(width * factor))
    new_h = max(1, round(height * factor))
    pad = ((size - new_w) // 2, (size - new_h) // 2)
    return ResizeGeometry(
        (width, height), square, (new_w / width, new_h / height), pad, (new_w, new_h)
    )


def decode_floor(size: int, mode: str, *, oversample: float = 1.0) -> tuple[int, int]:
    """The fewest pixels a decoded image needs for a ``size x size`` input in ``mode``.

    Args:
        size: side of the square model input.
        mode: ``"stretch"`` (both sides matter) or ``"letterbox"`` (the longer side).
        oversample: how many times the input size to keep (``>= 1``; training uses
            ``TRAIN_OVERSAMPLE``).

    Returns:
        ``(shorter, longer)``: pixels needed at least on the image's shorter and longer
        side, the ``min_sides`` of ``annotations.image_decode.decode_image``.
    """
    check_resize_mode(mode)
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if not oversample >= 1.0:
        raise ValueError(f"oversample must be >= 1 (1: just the input size), got {oversample}")
    needed = math.ceil(size * oversample)
    return (needed, needed) if mode == "stretch" else (0, needed)


def through_reduction(
    geometry: ResizeGeometry, original: tuple[int, int], scale: tuple[float, float]
) -> ResizeGeometry:
    """The geometry of a reduced image's resize, seen from the original image.

    Args:
        geometry: from ``resize_geometry`` on the reduced image's size.
        original: ``(width, height)`` of the original image.
        scale: ``(sx, sy)``, reduced pixels per original pixel (the reduced image's
            origin is the original's, as in training's stored layout).

    Returns:
        A geometry with ``input = original_xy * scale + pad``, for ``boxes_to_original``.
    """
    sx, sy = geometry.scale
    return dataclasses.replace(geometry, original=original, scale=(sx * scale[0], sy * scale[1]))


def resize_to_input(
    pixels: np.ndarray,
    geometry: ResizeGeometry,
    fill: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    region: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Resize (and for letterbox pad) an RGB image as ``geometry`` says.

    Args:
        pixels: ``uint8`` ``[H, W, 3]`` RGB, ``(W, H) == geometry.original`` unless
            ``region`` is given.
        geometry: from ``resize_geometry``.
        fill: pad colour per channel in ``0..255`` pixel units (rounded to whole values).
        region: for a reduced decode (``annotations.decoded_image.DecodedImage.region``):
            ``x0, y0, x1, y1``, where the original of size ``geometry.original`` lies in
            ``pixels``; that region is what gets resized.

    Returns:
        ``uint8`` ``[S_h, S_w, 3]`` with ``(S_w, S_h) == geometry.input_size``.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(
            f"pixels must be uint8 [H, W, 3] RGB, got {pixels.dtype} {list(pixels.shape)}"
        )
    height, width = pixels.shape[:2]
    whole = (0.0, 0.0, float(width), float(height))
    if region is None and (width, height) != geometry.original:
        raise ValueError(
            f"the image is {width}x{height} but the geometry was computed for "
            f"{geometry.original[0]}x{geometry.original[1]}"
        )
    if region is not None and not _inside(region, width, height):
        raise ValueError(f"region {region} is not inside the {width}x{height} image")
    if len(fill) != 3:
        raise ValueError(f"fill needs one value per RGB channel, got {len(fill)}")
    box = whole if region is None else region
    new_w, new_h = geometry.resized
    image = Image.fromarray(pixels)
    if (new_w, new_h) != (width, height) or box != whole:
        shrinking = new_w < box[2] - box[0] and new_h < box[3] - box[1]
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        image = image.resize((new_w, new_h), resample=resample, box=box)
    if (new_w, new_h) != geometry.input_size:
        colour = (round(fill[0]), round(fill[1]), round(fill[2]))
        canvas = Image.new("RGB", geometry.input_size, colour)
        canvas.paste(image, geometry.pad)
        image = canvas
    return np.array(image, dtype=np.uint8)


def _inside(region: tuple[float, float, float, float], width: int, height: int) -> bool:
    x0, y0, x1, y1 = region
    return 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def boxes_to_original(boxes: np.ndarray, geometry: ResizeGeometry) -> np.ndarray:
    """Map boxes on the model input back to the original image.

    Args:
        boxes: ``[N, 4]`` ``x1, y1, x2, y2`` in model-input pixels.
        geometry: the image's ``ResizeGeometry``.

    Returns:
        ``[N, 4]`` boxes in original 0-based continuous pixels, clipped to the original
        image; float32 unless ``boxes`` is float64.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
    dtype = np.float64 if boxes.dtype == np.float64 else np.float32
    sx, sy = geometry.scale
    px, py = geometry.pad
    width, height = geometry.original
    mapped = (boxes.astype(dtype, copy=False) - np.asarray([px, py, px, py], dtype)) / np.asarray(
        [sx, sy, sx, sy], dtype
    )
    return np.clip(mapped, 0, np.asarray([width, height, width, height], dtype)).astype(dtype)
