"""The image formats prodet accepts, and their decoding to one layout: RGB ``uint8`` ``[H, W, 3]``.

Written once for the whole pipeline. It lives in ``annotations``, the first stage that
needs it: the converter decides which files are images (``IMAGE_EXTENSIONS``) and which
formats it accepts (``sniff_format``); training (``datasets.detection_dataset``) decodes
with ``decode_file``; the service decodes untrusted uploads with ``decode_image``.
It needs Pillow and numpy only (no torch), so the service can import it.

Formats (``IMAGE_FORMATS``) are named by the bytes' signature, never by a file name or a
Content-Type (the commodity images are RGBA PNGs named ``.jpg``), and Pillow is then only
allowed that one decoder. Bytes without a known signature raise ``UnsupportedImageError``;
bytes with one that do not decode raise ``CorruptImageError``; more pixels than allowed
(checked from the header, before any pixel is decoded, which stops decompression bombs)
raise ``ImageTooLargeError``. All three are ``ImageDecodeError`` (a ``ValueError``); the
service answers them 415, 400 and 413 (``serve.errors``). Only the first frame of an
animated or multi-page file is read.

Every Pillow mode a detection dataset plausibly holds maps to 8-bit RGB:

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
* ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: Pillow's conversion to RGB (embedded
  ICC profiles are not applied, so colours are approximate).

Float images (``F``) and other modes raise ``UnsupportedImageError``.

EXIF orientation: a dataset image is decoded in its stored pixel layout
(``decode_image_file``, no rotation). The annotations were made on that layout and the
converter records the header's width and height (``annotations.image_header``), so
rotating by the EXIF tag would move the pixels away from their boxes and swap width and
height. The service applies the tag (``decode_image(..., exif_orientation=True)``): a
client's photo means what viewers show, and its boxes are answered in that image. The
two agree on every image without a rotating tag (all of the shared data sets). A missing,
damaged or invalid tag (``annotations.orientation.orientation_of``) means "as stored".

Reduced-size JPEG decoding (``min_sides``, see ``annotations.jpeg_draft``): a JPEG can be
decoded at 1/2, 1/4 or 1/8 of its size, the smallest that keeps ``min_sides`` pixels;
``DecodedImage.region`` then says where the original lies in the smaller ``pixels``
(after the EXIF orientation), ``width``/``height`` stay the original's, and
``boxes_to_pixels`` maps boxes from the original onto ``pixels``. Other formats decode in
full. The pixel limit applies to the full size.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from prodet.annotations.decoded_image import DecodedImage
from prodet.annotations.jpeg_draft import draft_region
from prodet.annotations.orientation import orient_box, orient_size, orientation_of, upright

AlphaMode = Literal["composite", "drop"]
ALPHA_MODES: tuple[str, ...] = ("composite", "drop")

IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
# File names the converter lists as images (the format itself is still sniffed).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm"}
)
# Bytes ``sniff_format`` needs to name any of ``IMAGE_FORMATS``.
SNIFF_BYTES = 18

_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_PPM_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_PILLOW_CONVERTED_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV", "1", "RGBX"})
_WHITE = 255
_OPAQUE = 255


class ImageDecodeError(ValueError):
    """The bytes cannot be turned into RGB pixels (subclasses say why)."""


class UnsupportedImageError(ImageDecodeError):
    """Not an image, or an image of a format or mode prodet does not read."""


class CorruptImageError(ImageDecodeError):
    """The bytes start like a supported image but do not decode (truncated, damaged)."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than allowed."""


def sniff_format(head: bytes) -> str:
    """The format (one of ``IMAGE_FORMATS``) named by the signature at the start of ``head``.

    Args:
        head: the encoded image, or at least its first ``SNIFF_BYTES`` bytes.

    Raises:
        UnsupportedImageError: empty, or no supported signature.
    """
    if not head:
        raise UnsupportedImageError("the image is empty (0 bytes)")
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if len(head) > 2 and head[0:1] == b"P" and head[1] in b"123456" and head[2] in _PPM_WHITESPACE:
        return "PPM"
    raise UnsupportedImageError(
        f"the bytes are not an image of a supported format ({', '.join(IMAGE_FORMATS)}); "
        f"they start with {head[:8]!r}"
    )


def decode_image(
    data: bytes,
    *,
    exif_orientation: bool,
    max_pixels: int | None = None,
    alpha: AlphaMode = "composite",
    min_sides: tuple[int, int] | None = None,
) -> DecodedImage:
    """Decode (untrusted) encoded image bytes to RGB.

    Args:
        data: the encoded image.
        exif_orientation: rotate/flip the pixels as the EXIF orientation tag says (the
            service); False keeps the stored layout (training; see the module docstring).
        max_pixels: the largest ``width * height`` accepted; None leaves only Pillow's
            own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``).
        alpha: ``"composite"`` (on white) or ``"drop"``, for images with an alpha channel.
        min_sides: ``(shorter, longer)``: decode a JPEG at the smallest DCT scale whose
            sides keep at least these many pixels (see the module docstring); None, or
            another format, decodes in full.

    Returns:
        The ``uint8`` ``[h, w, 3]`` pixels, the sniffed format, the original's size and
        where it lies in the pixels.

    Raises:
        UnsupportedImageError: not an image of a supported format, or an unsupported mode.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        CorruptImageError: truncated or damaged.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    image_format = sniff_format(data)
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}x{height} = {width * height:,} pixels; the limit is "
                    f"{max_pixels:,} (downscale it before sending)"
                )
            region = (
                draft_region(image, min_sides) if image_format == "JPEG" and min_sides else None
            )
            image.load()
            orientation = orientation_of(image) if exif_orientation else 1
            pixels = to_rgb(upright(image, orientation), alpha=alpha)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        limit = "" if max_pixels is None else f"; the limit is {max_pixels:,} pixels"
        raise ImageTooLargeError(f"the image is too large ({exc}){limit}") from None
    except Exception as exc:
        # Pillow's decoders raise many types on damaged input (OSError, SyntaxError,
        # EOFError, struct.error, IndexError, ...); all of them mean "corrupt".
        raise CorruptImageError(
            f"the {image_format} image is truncated or damaged ({type(exc).__name__}: {exc})"
        ) from None
    if region is None:
        return DecodedImage.full(pixels, image_format, orientation)
    stored = (image.size[0], image.size[1])
    return DecodedImage(
        pixels,
        image_format,
        orient_size((width, height), orientation),
        orient_box(region, stored, orientation),
        orientation,
    )


def decode_file(
    path: str | os.PathLike[str],
    *,
    alpha: AlphaMode = "composite",
    min_sides: tuple[int, int] | None = None,
) -> DecodedImage:
    """Read a dataset image as RGB in its stored pixel layout (no EXIF orientation).

    Args:
        path: the image file; its extension is ignored.
        alpha: ``"composite"`` (on white) or ``"drop"``, for images with an alpha channel.
        min_sides: as in ``decode_image``: a JPEG decodes at reduced size when given.

    Returns:
        The decoded image; its ``size`` is the one the converter recorded.

    Raises:
        FileNotFoundError: no such file (other ``OSError`` s of reading it pass through).
        ImageDecodeError: unreadable, truncated, or a mode without an RGB mapping (the
            subclass says which; the message names the file).
    """
    data = Path(path).read_bytes()
    try:
        return decode_image(data, exif_orientation=False, alpha=alpha, min_sides=min_sides)
    except ImageDecodeError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def decode_image_file(
    path: str | os.PathLike[str], *, alpha: AlphaMode = "composite"
) -> np.ndarray:
    """``decode_file``'s pixels in full: ``uint8`` ``[H, W, 3]`` of the recorded size.

    Raises:
        FileNotFoundError, ImageDecodeError: as ``decode_file``.
    """
    return decode_file(path, alpha=alpha).pixels


def to_rgb(image: Image.Image, *, alpha: AlphaMode = "composite") -> np.ndarray:
    """Map a decoded Pillow image to ``uint8`` ``[H, W, 3]`` RGB (see the module docstring).

    Raises:
        UnsupportedImageError: a mode without an RGB mapping (e.g. 32-bit float ``F``).
    """
    mode = image.mode
    if mode == "P":
        return to_rgb(image.convert("RGBA" if "transparency" in image.info else "RGB"), alpha=alpha)
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode == "L":
        return _gray_to_rgb(np.asarray(image, dtype=np.uint8))
    if mode in _SIXTEEN_BIT_MODES:
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return _gray_to_rgb(((wide * 255 + 32767) // 65535).astype(np.uint8))
    if mode in _ALPHA_MODES:
        rgba_image = image if mode == "RGBA" else image.convert("RGBA")
        if rgba_image.getchannel("A").getextrema()[0] == _OPAQUE:
            # Fully opaque (most RGBA photos): both alpha modes give the RGB unchanged, and
            # dropping alpha in C is ten times cheaper than the blend.
            return np.asarray(rgba_image.convert("RGB"), dtype=np.uint8)
        return _flatten_alpha(np.asarray(rgba_image, dtype=np.uint8), alpha)
    if mode in _PILLOW_CONVERTED_MODES:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise UnsupportedImageError(
        f"image mode {mode!r} has no RGB mapping; use 8- or 16-bit RGB or grayscale "
        "(e.g. convert the file to PNG)"
    )


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _flatten_alpha(rgba: np.ndarray, alpha: AlphaMode) -> np.ndarray:
    rgb = rgba[:, :, :3]
    if alpha == "drop":
        return np.ascontiguousarray(rgb)
    a = rgba[:, :, 3:4].astype(np.uint16)
    blended = (rgb.astype(np.uint16) * a + _WHITE * (255 - a) + 127) // 255
    return blended.astype(np.uint8)
