"""Read an image's real format and size from its header, without decoding pixels.

File extensions lie (the course's product images are RGBA PNGs named ``.jpg``), so the
format is sniffed from the bytes. Pixel data is never decoded: PNG and JPEG headers are
read by ``fast_header`` (Pillow's answer at a fraction of the cost), anything it does not
vouch for by Pillow's ``Image.open``, which reads only the header.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from PIL import Image

from prodet.annotations.fast_header import read_fast_header_fd
from prodet.annotations.image_decode import SNIFF_BYTES, sniff_format


class ImageHeaderError(ValueError):
    """The file is not an image Pillow can identify."""


class ImageHeader(NamedTuple):
    """``format`` as Pillow names it (``"PNG"``, ``"JPEG"``); ``mode`` as Pillow's mode.

    A named tuple: one is made per annotation file in the conversion's hot loop.
    """

    format: str
    width: int
    height: int
    mode: str


def read_image_header_fd(fd: int, path: str) -> ImageHeader:
    """Sniff format and size of the image ``path``, already open as ``fd`` (the header
    bytes are parsed directly; other formats are reopened by Pillow).

    Raises:
        ImageHeaderError: the bytes are not a supported image (names the file).
    """
    fast = read_fast_header_fd(fd)
    if fast is not None:
        return ImageHeader(*fast)
    return read_pillow_header(path)


def read_pillow_header(path: str | os.PathLike[str]) -> ImageHeader:
    """Format and size of the image at ``path`` by ``Image.open`` alone (the reference
    for ``fast_header``).

    The format is sniffed by ``image_decode.sniff_format``, so the converter accepts the
    formats that training and the service decode, no others.

    Raises:
        FileNotFoundError: no such file.
        ImageHeaderError: the bytes are not a supported image (names the file).
    """
    try:
        with open(path, "rb") as file:
            image_format = sniff_format(file.read(SNIFF_BYTES))
            file.seek(0)
            with Image.open(file, formats=[image_format]) as im:
                width, height = im.size
                return ImageHeader(str(im.format), int(width), int(height), str(im.mode))
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # UnsupportedImageError is a ValueError
        raise ImageHeaderError(f"{path}: not a readable image ({exc})") from None
