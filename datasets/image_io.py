"""Decode any image a VOC folder holds into one array layout: RGB ``uint8`` ``[H, W, 3]``.

The format is sniffed from the bytes by Pillow, never taken from the file extension
(the commodity images are RGBA PNGs named ``.jpg``). Every Pillow mode a detection
dataset plausibly holds is mapped to 8-bit RGB:

* ``RGB``: as stored.
* ``L`` (grayscale, e.g. some raccoon JPEGs) and ``1`` (bilevel): the gray value is
  repeated in all three channels.
* ``P`` (palette): expanded through the palette; a palette with a transparent entry is
  treated like ``RGBA``.
* ``RGBA``, ``LA``, ``PA`` (and premultiplied ``RGBa``/``La``): by default composited on
  a white background, ``alpha="drop"`` discards alpha instead. Compositing is the default
  because the colour stored under fully transparent pixels is arbitrary (often black or
  leftovers of an editor); product cut-outs are meant to be seen on white, which is also
  how image viewers and the annotation tools showed them to the annotators.
* ``I;16``/``I;16B``/``I;16L``/``I`` (16-bit grayscale, ``I`` clipped to ``0..65535``):
  scaled linearly by ``255 / 65535`` with rounding. The scale is fixed, not stretched per
  image, so the same pixel value means the same brightness in training and at serving
  time (12-bit data stored in 16-bit containers therefore comes out dark).
* ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion to RGB (embedded ICC
  profiles are not applied, so colours are approximate).

Float images (``F``) and other modes raise ``ImageDecodeError``. Only the first frame of
an animated or multi-page file is read.

EXIF orientation is deliberately NOT applied. The annotations (boxes and the record's
width/height, read from the file header by the converter) were made on the stored pixel
layout; rotating the pixels by the EXIF tag would move them away from their boxes and
swap width and height. A camera JPEG that viewers show rotated is therefore returned as
stored.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

AlphaMode = Literal["composite", "drop"]
ALPHA_MODES: tuple[str, ...] = ("composite", "drop")

# Formats a detection dataset plausibly holds; restricting the probe skips dozens of
# exotic plugins per file.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM")

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_CONVERTIBLE_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV", "1", "RGBX"})
_WHITE = 255
_OPAQUE = 255


class ImageDecodeError(ValueError):
    """The file is not an image this module can turn into RGB (names the file)."""


def sniff_format(path: str | os.PathLike[str]) -> str:
    """The real format of the image at ``path`` (``"PNG"``, ``"JPEG"``, ...) from its bytes.

    Raises:
        FileNotFoundError: no such file.
        ImageDecodeError: the bytes are not an image of a supported format.
    """
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            return str(im.format)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: not a readable image ({exc})") from None


def decode_image(path: str | os.PathLike[str], *, alpha: AlphaMode = "composite") -> np.ndarray:
    """Read the image at ``path`` as RGB.

    Args:
        path: the image file; its extension is ignored.
        alpha: ``"composite"`` (on white) or ``"drop"``, for images with an alpha channel.

    Returns:
        ``uint8`` array ``[H, W, 3]`` in the stored pixel layout (no EXIF rotation).

    Raises:
        FileNotFoundError: no such file.
        ImageDecodeError: unreadable, truncated, or a mode without an RGB mapping.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            im.load()
            return pil_to_rgb(im, alpha=alpha)
    except FileNotFoundError:
        raise
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: not a readable image ({exc})") from None


def pil_to_rgb(image: Image.Image, *, alpha: AlphaMode = "composite") -> np.ndarray:
    """Map a decoded Pillow image of any supported mode to ``uint8`` ``[H, W, 3]`` RGB.

    See the module docstring for what each mode becomes.

    Raises:
        ImageDecodeError: the mode has no RGB mapping (e.g. float ``F`` images).
    """
    mode = image.mode
    if mode == "P":
        has_transparency = "transparency" in image.info
        return pil_to_rgb(image.convert("RGBA" if has_transparency else "RGB"), alpha=alpha)
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode == "L":
        return _gray_to_rgb(np.asarray(image, dtype=np.uint8))
    if mode in _SIXTEEN_BIT_MODES:
        return _gray_to_rgb(_scale_16bit(np.asarray(image)))
    if mode in _ALPHA_MODES:
        rgba_image = image if mode == "RGBA" else image.convert("RGBA")
        if rgba_image.getchannel("A").getextrema()[0] == _OPAQUE:
            # Fully opaque (most RGBA photos): both alpha modes give the RGB unchanged, and
            # dropping alpha in C is ten times cheaper than the blend.
            return np.asarray(rgba_image.convert("RGB"), dtype=np.uint8)
        return _flatten_alpha(np.asarray(rgba_image, dtype=np.uint8), alpha)
    if mode in _CONVERTIBLE_MODES:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise ImageDecodeError(
        f"image mode {mode!r} has no RGB mapping; convert the file to 8- or 16-bit "
        "RGB/grayscale (e.g. PNG) before training"
    )


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """``0..65535`` to ``0..255`` with rounding; ``I`` images are clipped to 16 bits first."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _flatten_alpha(rgba: np.ndarray, alpha: AlphaMode) -> np.ndarray:
    rgb = rgba[:, :, :3]
    if alpha == "drop":
        return np.ascontiguousarray(rgb)
    a = rgba[:, :, 3:4].astype(np.uint16)
    blended = (rgb.astype(np.uint16) * a + _WHITE * (255 - a) + 127) // 255
    return blended.astype(np.uint8)
