"""Untrusted bytes to an RGB ``uint8`` array, with the format sniffed and sizes limited.

The format comes from the bytes' signature, never from a file name or Content-Type, and
Pillow is only allowed that one decoder. The header's pixel count is checked before any
pixel is decoded, which stops decompression bombs (a few KB of PNG claiming 100k x 100k).
EXIF orientation is applied first, so boxes refer to the image as viewers show it.

Modes map to RGB as in training (``datasets.image_io``): grayscale and bilevel repeat the
gray value; palettes expand (a transparent entry makes them RGBA); alpha composites on
white; 16-bit values scale by ``255 / 65535``; CMYK, YCbCr, LAB and HSV go through Pillow.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_PILLOW_CONVERTED_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV", "1", "RGBX"})
_WHITE = 255
_OPAQUE = 255


class ImageError(ValueError):
    """The bytes cannot be served as an image (subclasses say why)."""


class UnsupportedImageError(ImageError):
    """Not an image, or an image of a format or mode this service does not read."""


class CorruptImageError(ImageError):
    """The bytes start like a supported image but do not decode (truncated, damaged)."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed."""


@dataclass(frozen=True)
class DecodedImage:
    """RGB pixels as viewers show them: ``uint8`` ``[H, W, 3]``; ``format`` as sniffed."""

    pixels: np.ndarray
    format: str

    @property
    def width(self) -> int:
        """Width in pixels (after EXIF orientation)."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels (after EXIF orientation)."""
        return int(self.pixels.shape[0])


def sniff_format(data: bytes) -> str:
    """The format named by ``data``'s signature (``"PNG"``, ``"JPEG"``, ...).

    Raises:
        UnsupportedImageError: empty, or no supported signature.
    """
    if not data:
        raise UnsupportedImageError("the image is empty (0 bytes)")
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    raise UnsupportedImageError(
        f"the bytes are not an image of a supported format ({', '.join(SUPPORTED_FORMATS)}); "
        f"they start with {data[:8]!r}"
    )


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode untrusted image bytes to RGB.

    Args:
        data: the encoded image.
        max_pixels: the largest ``width * height`` accepted.

    Raises:
        UnsupportedImageError: not an image of a supported format, or an unsupported mode.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        CorruptImageError: truncated or damaged.
    """
    image_format = sniff_format(data)
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}x{height} = {width * height:,} pixels; the limit is "
                    f"{max_pixels:,} (downscale it before sending)"
                )
            image.load()
            pixels = to_rgb(_upright(image))
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"the image is too large ({exc}); the limit is {max_pixels:,} pixels"
        ) from None
    except Exception as exc:
        # Pillow's decoders raise many types on damaged input (OSError, SyntaxError,
        # EOFError, struct.error, IndexError, ...); all of them mean "corrupt", none a 500.
        raise CorruptImageError(
            f"the {image_format} image is truncated or damaged ({type(exc).__name__}: {exc})"
        ) from None
    return DecodedImage(pixels, image_format)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a damaged EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:
        logger.info("ignoring unreadable EXIF orientation: %s", exc)
        return image


def to_rgb(image: Image.Image) -> np.ndarray:
    """Map a decoded Pillow image to ``uint8`` ``[H, W, 3]`` RGB (see the module docstring).

    Raises:
        UnsupportedImageError: a mode without an RGB mapping (e.g. 32-bit float ``F``).
    """
    mode = image.mode
    if mode == "P":
        return to_rgb(image.convert("RGBA" if "transparency" in image.info else "RGB"))
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode == "L":
        return np.repeat(np.asarray(image, dtype=np.uint8)[:, :, None], 3, axis=2)
    if mode in _SIXTEEN_BIT_MODES:
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in _ALPHA_MODES:
        rgba_image = image if mode == "RGBA" else image.convert("RGBA")
        if rgba_image.getchannel("A").getextrema()[0] == _OPAQUE:
            # Fully opaque (most RGBA photos): compositing would return the RGB unchanged;
            # dropping alpha in C is ten times cheaper than the blend below.
            return np.asarray(rgba_image.convert("RGB"), dtype=np.uint8)
        rgba = np.asarray(rgba_image, dtype=np.uint8)
        alpha = rgba[:, :, 3:4].astype(np.uint16)
        blended = (rgba[:, :, :3].astype(np.uint16) * alpha + _WHITE * (255 - alpha) + 127) // 255
        return blended.astype(np.uint8)
    if mode in _PILLOW_CONVERTED_MODES:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise UnsupportedImageError(
        f"image mode {mode!r} is not supported; send 8- or 16-bit RGB or grayscale"
    )
