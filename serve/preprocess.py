"""Untrusted image bytes to the model's input tensor.

Decoding is ``annotations.image_decode`` (with the EXIF orientation applied), the resize
and the box geometry are ``datasets.geometry``: the same code training's ``eval`` preset
runs, so the model sees the pixels it was evaluated on. ``postprocess`` maps boxes back
with ``datasets.geometry.boxes_to_original``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from prodet.annotations.image_decode import decode_image
from prodet.datasets.geometry import ResizeGeometry, resize_geometry, resize_to_input
from prodet.export.onnx_contract import ModelMetadata


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
    geometry = resize_geometry(width, height, metadata.input_size, metadata.resize_mode)
    resized = resize_to_input(pixels, geometry, fill=[255 * m for m in metadata.mean])
    mean = np.asarray(metadata.mean, dtype=np.float32)
    std = np.asarray(metadata.std, dtype=np.float32)
    normalised = (resized.astype(np.float32) * np.float32(1 / 255) - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)), geometry


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
    """Decode untrusted bytes (see ``annotations.image_decode``) and build the model input.

    Raises:
        annotations.image_decode.ImageDecodeError: the bytes are not a usable image.
    """
    start = time.perf_counter()
    decoded = decode_image(data, exif_orientation=True, max_pixels=max_pixels)
    tensor, geometry = to_model_input(decoded.pixels, metadata)
    elapsed = (time.perf_counter() - start) * 1000
    return PreparedImage(tensor, geometry, decoded.width, decoded.height, decoded.format, elapsed)
