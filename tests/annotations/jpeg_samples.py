"""Hand-made JPEGs of the awkward kinds cameras and editors write (shared by the tests)."""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str = "JPEG", **save_args: Any) -> bytes:
    """``image`` encoded in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def scene(width: int, height: int, square: tuple[int, int, int, int]) -> Image.Image:
    """A mid-gray image with a smooth horizontal ramp and one white ``x1, y1, x2, y2`` square."""
    ramp = np.linspace(60, 140, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    pixels = np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)
    x1, y1, x2, y2 = square
    pixels[y1:y2, x1:x2] = 255
    return Image.fromarray(pixels)


def with_orientation(image: Image.Image, value: int | str, **save_args: Any) -> bytes:
    """A JPEG of ``image`` whose EXIF orientation tag holds ``value``, valid or not.

    An ``int`` is written as the usual SHORT; a ``str`` (at most 3 characters) as ASCII,
    which no camera writes but a damaged or hand-edited file may hold.
    """
    if isinstance(value, int):
        exif = Image.Exif()
        exif[0x0112] = value
        return encode(image, "JPEG", exif=exif.tobytes(), **save_args)
    text = value.encode("ascii")[:3].ljust(3, b"\x00") + b"\x00"
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, 2, 4) + text + struct.pack("<I", 0)
    exif_bytes = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd0
    return encode(image, "JPEG", exif=exif_bytes, **save_args)


def with_big_thumbnail(image: Image.Image, thumbnail: Image.Image) -> bytes:
    """A JPEG of ``image`` carrying an EXIF thumbnail JPEG of ``thumbnail`` (any size).

    The EXIF block (APP1) holds a little-endian TIFF with IFD0 (orientation 1) and IFD1
    pointing at the thumbnail's bytes, the layout cameras write.
    """
    thumb = encode(thumbnail, "JPEG", quality=20)
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 1, 0) + struct.pack("<I", 26)
    ifd1 = (
        struct.pack("<H", 2)
        + struct.pack("<HHII", 0x0201, 4, 1, 56)
        + struct.pack("<HHII", 0x0202, 4, 1, len(thumb))
        + struct.pack("<I", 0)
    )
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + thumb
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"thumbnail of {len(thumb)} bytes does not fit one APP1 segment")
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    main = encode(image, "JPEG", quality=95)
    return main[:2] + app1 + main[2:]
