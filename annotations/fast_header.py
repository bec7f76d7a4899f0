"""Read a PNG's or JPEG's size from its first bytes, giving exactly Pillow's answer or none.

``Image.open`` costs tens of microseconds per file (plugin dispatch, buffered small reads,
per-chunk handlers); a conversion checks one image per annotation, so that dominated the
per-file cost. This module reads the head of the file with one ``os.read`` (more only when
the size field lies further in) and walks the PNG chunks up to the first ``IDAT`` or the
JPEG markers up to the first ``SOS``, the same bytes ``Image.open`` reads.

It mirrors every check ``Image.open`` makes on those bytes (chunk CRCs, truncated
segments, Pillow's per-chunk and per-marker validation, the mode table, the decompression
bomb limit) for the structures real files use. Whenever the bytes hold anything it does
not mirror (another format, an APNG, an MPO, a compressed text chunk, EXIF without JFIF
density, a truncated or odd file, ``ImageFile.LOAD_TRUNCATED_IMAGES``, ...) it returns
None, and the caller asks Pillow, so the answer is Pillow's either way.

``mode`` is Pillow's mode at open time: for PNG from the IHDR bit depth and colour type
(``"1"``, ``"L"``, ``"I;16"``, ``"RGB"``, ``"P"``, ``"LA"``, ``"RGBA"``), for JPEG from
the frame's component count (``"L"``, ``"RGB"``, ``"CMYK"``).
"""

from __future__ import annotations

import os
import re
import zlib
from struct import unpack_from

from PIL import Image, ImageFile, PngImagePlugin

FIRST_READ = 4096  # one read covers the PNG IHDR and most JPEG headers up to SOF and SOS
MAX_SCAN = 1 << 22  # headers further in than 4 MiB are left to Pillow

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

# Pillow's PngImagePlugin._MODES, (bit depth, colour type) -> mode.
_PNG_MODES = {
    (1, 0): "1",
    (2, 0): "L",
    (4, 0): "L",
    (8, 0): "L",
    (16, 0): "I;16",
    (8, 2): "RGB",
    (16, 2): "RGB",
    (1, 3): "P",
    (2, 3): "P",
    (4, 3): "P",
    (8, 3): "P",
    (8, 4): "LA",
    (16, 4): "RGBA",
    (8, 6): "RGBA",
    (16, 6): "RGBA",
}
# Chunks Pillow has a handler for; those not mirrored below send the file to Pillow.
_PNG_HANDLED = frozenset(
    name[len("chunk_") :].encode("ascii")
    for name in dir(PngImagePlugin.PngStream)
    if name.startswith("chunk_")
)
# Minimum body length of the simple chunk handlers (Pillow raises ValueError below it).
_PNG_MIN_LENGTH = {b"PLTE": 0, b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9}
_IS_CID = re.compile(rb"\w\w\w\w").match  # Pillow's PngImagePlugin.is_cid

_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
# Pillow's JPEG marker table: SOF handlers, and markers it passes over without a length.
_JPEG_SOF = frozenset(
    {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xCD, 0xCE, 0xCF, 0xDE}
)
_NO_LENGTH = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})


class _Head:
    """The first bytes of an open file, extended on demand."""

    __slots__ = ("data", "fd")

    def __init__(self, fd: int, data: bytes) -> None:
        self.fd = fd
        self.data = data

    def has(self, end: int) -> bool:
        """Whether bytes ``[0, end)`` exist; reads more of the file when needed."""
        if end <= len(self.data):
            return True
        if end > MAX_SCAN or len(self.data) < FIRST_READ:  # too far, or already at EOF
            return False
        want = min(max(end, 2 * len(self.data)), MAX_SCAN) - len(self.data)
        self.data += os.pread(self.fd, want, len(self.data))
        return end <= len(self.data)


def read_fast_header(path: str | os.PathLike[str]) -> tuple[str, int, int, str] | None:
    """``(format, width, height, mode)`` as ``Image.open`` reports them, or None.

    None means "ask Pillow": the file is not a PNG or JPEG, holds a structure this reader
    does not mirror, is damaged, or could not be opened (Pillow then raises the error).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return read_fast_header_fd(fd)
    finally:
        os.close(fd)


def read_fast_header_fd(fd: int) -> tuple[str, int, int, str] | None:
    """``read_fast_header`` of a file already open for reading (read from offset 0)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # Pillow then skips checks mirrored here
        return None
    try:
        head = _Head(fd, os.pread(fd, FIRST_READ, 0))
        if head.data.startswith(_PNG_MAGIC):
            found = _png(head)
        elif head.data.startswith(_JPEG_MAGIC):
            found = _jpeg(head)
        else:
            return None
    except OSError:
        return None
    if found is None:
        return None
    limit = Image.MAX_IMAGE_PIXELS  # Pillow warns or raises above it; let it
    if limit is not None and found[1] * found[2] > limit:
        return None
    return found


def _png(head: _Head) -> tuple[str, int, int, str] | None:
    if not head.has(33):
        return None
    data = head.data
    length, cid = unpack_from(">I4s", data, 8)
    if cid != b"IHDR" or length != 13 or zlib.crc32(data[12:29]) != unpack_from(">I", data, 29)[0]:
        return None
    width, height, depth, colour, _, filter_method = unpack_from(">IIBBBB", data, 16)
    mode = _PNG_MODES.get((depth, colour))
    if mode is None or filter_method != 0 or width == 0 or height == 0:
        return None
    pos = 33
    text_memory = 0
    while True:
        if not head.has(pos + 8):
            return None
        length, cid = unpack_from(">I4s", head.data, pos)
        if cid == b"IDAT":  # Pillow stops here without reading the chunk
            return "PNG", width, height, mode
        end = pos + 8 + length
        if not _IS_CID(cid) or not head.has(end + 4):
            return None
        data = head.data
        body = data[pos + 8 : end]
        if zlib.crc32(body, zlib.crc32(cid)) != unpack_from(">I", data, end)[0]:
            return None
        if cid in _PNG_HANDLED:
            if cid in _PNG_MIN_LENGTH:
                if length < _PNG_MIN_LENGTH[cid]:
                    return None
            elif cid == b"tRNS":
                if mode in ("1", "L", "I;16", "RGB") and length < (6 if mode == "RGB" else 2):
                    return None
            elif cid == b"tEXt":
                key, _, value = body.partition(b"\0")
                text_memory += len(value) if key else 0
            elif cid == b"iTXt":
                added = _itxt_text_length(body)
                if added is None:
                    return None
                text_memory += added
            elif cid == b"iCCP":
                if not _iccp_ok(body):
                    return None
            else:  # IHDR again, IEND, APNG chunks, zTXt, eXIf, ...: not mirrored
                return None
            if text_memory > PngImagePlugin.MAX_TEXT_MEMORY:
                return None
        pos = end + 4


def _itxt_text_length(body: bytes) -> int | None:
    """Characters Pillow's iTXt handler adds to its text budget; None: needs zlib, ask Pillow."""
    key, sep, rest = body.partition(b"\0")
    if not sep or len(rest) < 2:
        return 0
    compressed, method, rest = rest[0], rest[1], rest[2:]
    parts = rest.split(b"\0", 2)
    if len(parts) != 3:
        return 0
    if compressed != 0:
        return None if method == 0 else 0
    try:
        key.decode("latin-1")
        parts[0].decode("utf-8")
        parts[1].decode("utf-8")
        return len(parts[2].decode("utf-8"))
    except UnicodeError:
        return 0


def _iccp_ok(body: bytes) -> bool:
    """Whether Pillow's iCCP handler accepts the chunk (it decompresses the profile)."""
    i = body.find(b"\0")
    if i + 1 >= len(body) or body[i + 1] != 0:
        return False
    try:
        inflater = zlib.decompressobj()
        inflater.decompress(body[i + 2 :], PngImagePlugin.MAX_TEXT_CHUNK)
    except zlib.error:  # Pillow keeps going without the profile
        return True
    return not inflater.unconsumed_tail


def _jpeg(head: _Head) -> tuple[str, int, int, str] | None:
    # Follows JpegImageFile._open: fill bytes and junk between markers are skipped,
    # markers without a length are passed over, each segment must be complete. Segment
    # bodies are read in place (``data`` offsets), not copied.
    pos = 2
    frame: tuple[int, int, str] | None = None
    density = exif = False
    data = head.data
    while True:
        if pos + 4 > len(data):
            if not head.has(pos + 2):
                return None  # no SOS: Pillow may still answer, let it
            data = head.data
        if data[pos] != 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x00:
            pos += 2
            continue
        if marker < 0xC0:
            return None  # Pillow: "no marker found"
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if not head.has(pos + 4):
            return None
        start = pos + 4
        end = pos + 2 + unpack_from(">H", head.data, pos + 2)[0]
        if end < start or not head.has(end):
            return None
        data = head.data
        if marker in _JPEG_SOF:
            # Pillow: 8-bit samples, 1/3/4 components, whole 3-byte component entries.
            if end - start < 6 or (end - start - 6) % 3 or data[start] != 8:
                return None
            mode = _JPEG_MODES.get(data[start + 5])
            if mode is None:
                return None
            height, width = unpack_from(">HH", data, start + 1)
            frame = (width, height, mode)
        elif marker == 0xDB:
            if not _dqt_ok(data, start, end):
                return None
        elif 0xE0 <= marker <= 0xEF:
            app = _app_segment(marker, data, start, end)
            if app is None:
                return None
            density |= app == "density"
            exif |= app == "exif"
        elif marker == 0xDA:
            break
        pos = end
    if frame is None or frame[0] == 0 or frame[1] == 0:
        return None
    if exif and not density:  # Pillow then parses the EXIF block for a DPI; let it
        return None
    return "JPEG", *frame


def _dqt_ok(data: bytes, start: int, end: int) -> bool:
    """Pillow's DQT check on ``data[start:end]``: whole 8- or 16-bit tables of 64 entries."""
    i = start
    while i < end:
        i += 65 if data[i] < 16 else 129
        if i > end:
            return False
    return True


def _app_segment(marker: int, data: bytes, start: int, end: int) -> str | None:
    """Classify the APPn segment ``data[start:end]`` as Pillow's APP handler reads it.

    Returns ``"density"`` for a JFIF segment that gives Pillow a DPI, ``"exif"`` for an
    EXIF segment, ``""`` for anything else Pillow accepts, None to ask Pillow.
    """
    size = end - start
    if marker == 0xE0 and data.startswith(b"JFIF", start, end):
        if size < 7:
            return None
        return "density" if size >= 12 and data[start + 7] in (1, 2) else ""
    if marker == 0xE1 and data.startswith(b"Exif\0\0", start, end):
        return "exif"
    if marker == 0xE2 and data.startswith(b"MPF\0", start, end):
        return None  # possibly an MPO: Pillow decides
    if marker == 0xE2 and data.startswith(b"ICC_PROFILE\0", start, end):
        return "" if size >= 14 else None
    if marker == 0xED and data.startswith(b"Photoshop 3.0\x00", start, end):
        return "" if _photoshop_ok(data[start:end]) else None
    if marker == 0xEE and data.startswith(b"Adobe", start, end):
        return "" if size >= 7 else None
    return ""


def _photoshop_ok(body: bytes) -> bool:
    """Whether Pillow's Photoshop resource walk ends without an uncaught IndexError."""
    offset = 14
    while body[offset : offset + 4] == b"8BIM":
        offset += 4
        if offset + 2 > len(body):
            return True  # Pillow: struct.error, caught
        (code,) = unpack_from(">H", body, offset)
        offset += 2
        if offset >= len(body):
            return False  # Pillow: IndexError reading the name length
        offset += 1 + body[offset]
        offset += offset & 1
        if offset + 4 > len(body):
            return True
        (size,) = unpack_from(">I", body, offset)
        offset += 4
        if code == 0x03ED and len(body[offset : offset + size]) < 14:
            return True  # Pillow: struct.error reading ResolutionInfo, caught
        offset += size
        offset += offset & 1
    return True
