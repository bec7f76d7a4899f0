"""Untrusted image bytes to the model's input tensor.

Decoding is ``annotations.image_decode`` (with the EXIF orientation applied), the resize
and the box geometry are ``datasets.geometry``: the same code training's ``eval`` preset
runs, so the model sees the pixels it was evaluated on. ``postprocess`` maps boxes back
with ``datasets.geometry.boxes_to_original``.

Fast JPEG decoding (``fast_jpeg=True``, the service's default): a JPEG is decoded at the
smallest DCT scale (1/2, 1/4, 1/8) that still gives the model input's size on the side
that matters (``datasets.geometry.decode_floor``); the original's region of those pixels
is resized to the geometry of the original size, so the geometry, and with it the boxes,
stay in the original image's pixels. Other formats decode in full either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from prodet.annotations.decoded_image import DecodedImage
from prodet.annotations.image_decode import decode_image
from prodet.datasets.geometry import (
    ResizeGeometry,
    decode_floor,
    resize_geometry,
    resize_to_input,
)
from prodet.export.onnx_contract import ModelMetadata


def to_model_input(
    image: np.ndarray | DecodedImage, metadata: ModelMetadata
) -> tuple[np.ndarray, ResizeGeometry]:
    """Resize, pad and normalise an RGB image for the model.

    Args:
        image: ``uint8`` ``[H, W, 3]`` RGB, or a ``DecodedImage`` (possibly reduced: its
            original's region is resized, and the geometry is the original size's).
        metadata: the model's contract metadata (input size, resize mode, mean, std).

    Returns:
        float32 ``[3, S, S]`` equal to ``(pixel / 255 - mean) / std``, and the geometry
        (from the original image's size).
    """
    decoded = image if isinstance(image, DecodedImage) else None
    pixels = image.pixels if isinstance(image, DecodedImage) else image
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}")
    width, height = (pixels.shape[1], pixels.shape[0]) if decoded is None else decoded.size
    geometry = resize_geometry(width, height, metadata.input_size, metadata.resize_mode)
    region = decoded.region if decoded is not None and decoded.reduced else None
    fill = [255 * m for m in metadata.mean]
    resized = resize_to_input(pixels, geometry, fill=fill, region=region)
    table = _normalised_values(tuple(metadata.mean), tuple(metadata.std))
    tensor = np.empty((3, resized.shape[0], resized.shape[1]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], resized[:, :, channel], out=tensor[channel])
    return tensor, geometry


@lru_cache(maxsize=8)
def _normalised_values(
    mean: tuple[float, float, float], std: tuple[float, float, float]
) -> np.ndarray:
    """float32 ``[3, 256]``: ``(value / 255 - mean) / std`` of every ``uint8`` value per
    channel, computed in float32 as a direct per-pixel evaluation would be, so looking
    pixels up in it gives bit-identical tensors at a third of the cost."""
    values = np.arange(256, dtype=np.float32)[:, None]
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    table = np.ascontiguousarray(((values * np.float32(1 / 255) - m) / s).T)
    table.flags.writeable = False
    return table


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


def decode_for_model(
    data: bytes, metadata: ModelMetadata, *, max_pixels: int, fast_jpeg: bool = True
) -> DecodedImage:
    """Decode untrusted bytes upright, a JPEG at reduced size when ``fast_jpeg``.

    Raises:
        annotations.image_decode.ImageDecodeError: the bytes are not a usable image.
    """
    floor = decode_floor(metadata.input_size, metadata.resize_mode) if fast_jpeg else None
    return decode_image(data, exif_orientation=True, max_pixels=max_pixels, min_sides=floor)


def prepare_image(
    data: bytes, metadata: ModelMetadata, *, max_pixels: int, fast_jpeg: bool = True
) -> PreparedImage:
    """Decode untrusted bytes (see ``annotations.image_decode``) and build the model input.

    Args:
        data: the encoded image.
        metadata: the model's contract metadata.
        max_pixels: the largest ``width * height`` accepted (of the full image).
        fast_jpeg: decode a JPEG at the smallest DCT scale the input size allows (see
            the module docstring); False decodes it in full.

    Raises:
        annotations.image_decode.ImageDecodeError: the bytes are not a usable image.
    """
    start = time.perf_counter()
    decoded = decode_for_model(data, metadata, max_pixels=max_pixels, fast_jpeg=fast_jpeg)
    return prepare_decoded(decoded, metadata, started=start)


def prepare_decoded(
    decoded: DecodedImage, metadata: ModelMetadata, *, started: float | None = None
) -> PreparedImage:
    """The model input of an already decoded image; ``decode_ms`` counts from ``started``
    (a ``time.perf_counter()`` value; 0 when None)."""
    tensor, geometry = to_model_input(decoded, metadata)
    elapsed = 0.0 if started is None else (time.perf_counter() - started) * 1000
    return PreparedImage(tensor, geometry, decoded.width, decoded.height, decoded.format, elapsed)
