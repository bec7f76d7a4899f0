"""RGB pixels to the model's input tensor, and model-input boxes back to the original image.

The geometry matches training's ``datasets.letterbox``: ``stretch`` resizes to ``S x S``;
``letterbox`` scales the longer side to ``S`` (sizes rounded), centres the image and pads
with the mean colour (the odd pixel goes to the bottom/right). Downscaling averages areas
(Pillow's ``BOX``, as OpenCV's ``INTER_AREA`` in training), upscaling is bilinear.

A coordinate maps as ``input = original * scale + pad`` per axis; ``boxes_to_original``
inverts it and clips to the image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image
from prodet.serve.image_decode import decode_image
from prodet.serve.model_contract import ModelMetadata


@dataclass(frozen=True)
class ResizeGeometry:
    """How a ``width x height`` image lands in the ``S x S`` model input.

    Attributes:
        scale: ``(sx, sy)``, input pixels per original pixel.
        pad: ``(left, top)`` padding in input pixels (zero for ``stretch``).
        resized: ``(new_w, new_h)``, the image's size inside the input.
    """

    scale: tuple[float, float]
    pad: tuple[int, int]
    resized: tuple[int, int]


def resize_geometry(width: int, height: int, size: int, resize_mode: str) -> ResizeGeometry:
    """The scale and padding that ``to_model_input`` applies to a ``width x height`` image."""
    if width < 1 or height < 1 or size < 1:
        raise ValueError(f"sizes must be positive, got image {width}x{height} and input {size}")
    if resize_mode == "stretch":
        return ResizeGeometry((size / width, size / height), (0, 0), (size, size))
    if resize_mode != "letterbox":
        raise ValueError(f"resize_mode must be 'stretch' or 'letterbox', got {resize_mode!r}")
    factor = size / max(width, height)
    new_w = max(1, round(width * factor))
    new_h = max(1, round(height * factor))
    pad = ((size - new_w) // 2, (size - new_h) // 2)
    return ResizeGeometry((new_w / width, new_h / height), pad, (new_w, new_h))


def to_model_input(
    pixels: np.ndarray, metadata: ModelMetadata
) -> tuple[np.ndarray, ResizeGeometry]:
    """Resize, pad and normalise an RGB image for the model.

    Args:
        pixels: ``uint8`` ``[H, W, 3]`` RGB.
        metadata: the model's contract metadata (input size, resize mode, mean, std).

    Returns:
        float32 ``[3, S, S]`` equal to ``(pixel / 255 - mean) / std``, and the geometry.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    size = metadata.input_size
    geometry = resize_geometry(width, height, size, metadata.resize_mode)
    new_w, new_h = geometry.resized
    image = Image.fromarray(pixels)
    if (new_w, new_h) != (width, height):
        shrinking = new_w < width and new_h < height
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        image = image.resize((new_w, new_h), resample=resample)
    if geometry.pad != (0, 0) or (new_w, new_h) != (size, size):
        fill = tuple(round(m * 255) for m in metadata.mean)
        canvas = Image.new("RGB", (size, size), fill)
        canvas.paste(image, geometry.pad)
        image = canvas
    mean = np.asarray(metadata.mean, dtype=np.float32)
    std = np.asarray(metadata.std, dtype=np.float32)
    normalised = (np.asarray(image, dtype=np.float32) * np.float32(1 / 255) - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)), geometry


def boxes_to_original(
    boxes: np.ndarray, geometry: ResizeGeometry, width: int, height: int
) -> np.ndarray:
    """Map ``[K, 4]`` model-input boxes to the original image's pixels, clipped to it.

    Returns:
        float32 ``[K, 4]``, ``x1, y1, x2, y2`` in 0-based continuous pixels.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {list(boxes.shape)}")
    sx, sy = geometry.scale
    px, py = geometry.pad
    offset = np.float32([px, py, px, py])
    mapped = (boxes.astype(np.float32) - offset) / np.float32([sx, sy, sx, sy])
    return np.clip(mapped, 0, np.float32([width, height, width, height])).astype(np.float32)


@dataclass(frozen=True)
class PreparedImage:
    """One request image, ready for the model.

    Attributes:
        tensor: float32 ``[3, S, S]`` model input.
        geometry: how the image maps into ``tensor``.
        width, height: the original image's size (after EXIF orientation).
        format: the sniffed format (``"JPEG"``, ``"PNG"``, ...).
        decode_ms: time spent decoding and pre-processing.
    """

    tensor: np.ndarray
    geometry: ResizeGeometry
    width: int
    height: int
    format: str
    decode_ms: float


def prepare_image(data: bytes, metadata: ModelMetadata, *, max_pixels: int) -> PreparedImage:
    """Decode untrusted bytes (see ``serve.image_decode``) and build the model input.

    Raises:
        serve.image_decode.ImageError: the bytes are not a usable image.
    """
    start = time.perf_counter()
    decoded = decode_image(data, max_pixels=max_pixels)
    tensor, geometry = to_model_input(decoded.pixels, metadata)
    elapsed = (time.perf_counter() - start) * 1000
    return PreparedImage(tensor, geometry, decoded.width, decoded.height, decoded.format, elapsed)
