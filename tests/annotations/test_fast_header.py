"""The fast PNG/JPEG header reader gives Pillow's answer, or none (then Pillow is asked)."""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile, PngImagePlugin

from prodet.annotations import fast_header
from prodet.annotations.fast_header import read_fast_header
from prodet.annotations.image_header import (
    ImageHeader,
    ImageHeaderError,
    read_image_header_fd,
    read_pillow_header,
)
from tests.conftest import shared_path


def read_image_header(path: Path) -> ImageHeader:
    """The converter's header read (fast path, Pillow fallback) of the file at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_image_header_fd(fd, str(path))
    finally:
        os.close(fd)


def pillow(path: Path) -> tuple[str, int, int, str] | None:
    """Pillow's answer, or None when Pillow refuses the file."""
    try:
        h = read_pillow_header(path)
    except ImageHeaderError:
        return None
    return h.format, h.width, h.height, h.mode


def agrees(path: Path) -> bool:
    """The fast answer is absent or exactly Pillow's (never a size for a file Pillow refuses)."""
    fast = read_fast_header(path)
    return fast is None or fast == pillow(path)


def put(path: Path, data: bytes) -> Path:
    """Replace the file's content (write then truncate: an O_TRUNC rewrite is slow on ext4)."""
    with open(path, "r+b" if path.exists() else "wb") as fh:
        fh.write(data)
        fh.truncate()
    return path


def chunk(cid: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + cid + body + struct.pack(">I", zlib.crc32(cid + body))


def png(depth: int, colour: int, *extra: bytes, size: tuple[int, int] = (31, 7)) -> bytes:
    ihdr = struct.pack(">IIBBBBB", *size, depth, colour, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(extra) + idat + chunk(b"IEND", b"")
    )


def saved(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def synthetic_images() -> dict[str, bytes]:
    """PNG and JPEG variants real tools write, plus a few the fast path must leave to Pillow."""
    exif = Image.Exif()
    exif[0x0110] = "camera"
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "x")
    info.add_itxt("XML:com.adobe.xmp", "<x/>")
    zipped = PngImagePlugin.PngInfo()
    zipped.add_text("Comment", "z" * 200, zip=True)
    images = {f"png_{m}": saved(Image.new(m, (37, 23)), "PNG") for m in ("1", "L", "P", "RGB")}
    images |= {f"png_{m}": saved(Image.new(m, (37, 23)), "PNG") for m in ("LA", "RGBA", "I;16")}
    images |= {
        "png_16bit_rgb": png(16, 2),
        "png_16bit_rgba": png(16, 4),
        "png_16bit_la": png(16, 6),
        "png_gama_chrm_srgb": png(8, 2, chunk(b"gAMA", bytes(4)), chunk(b"cHRM", bytes(32))),
        "png_bad_colour": png(8, 1),
        "png_text_icc_dpi": saved(
            Image.new("RGB", (40, 30)), "PNG", pnginfo=info, dpi=(72, 72), icc_profile=b"\1" * 300
        ),
        "png_ztxt": saved(Image.new("RGB", (8, 8)), "PNG", pnginfo=zipped),
        "png_interlaced_transparent": saved(Image.new("P", (20, 10)), "PNG", transparency=3),
        "png_rgb_transparent": saved(Image.new("RGB", (20, 10)), "PNG", transparency=(1, 2, 3)),
        "apng": saved(
            Image.new("RGB", (20, 10)),
            "PNG",
            save_all=True,
            append_images=[Image.new("RGB", (20, 10), (9, 9, 9))],
        ),
        "mpo": saved(
            Image.new("RGB", (33, 17)),
            "MPO",
            save_all=True,
            append_images=[Image.new("RGB", (33, 17))],
        ),
        "bmp": saved(Image.new("RGB", (33, 17)), "BMP"),
        "jpeg_exif_no_density": saved(Image.new("RGB", (33, 17)), "JPEG", exif=exif.tobytes()),
        "jpeg_exif_with_dpi": saved(
            Image.new("RGB", (33, 17)), "JPEG", exif=exif.tobytes(), dpi=(300, 300)
        ),
    }
    for mode in ("L", "RGB", "CMYK"):
        for label, params in {
            "baseline": {},
            "progressive": {"progressive": True},
            "dpi": {"dpi": (300, 300)},
            "comment": {"comment": b"hello"},
            "icc": {"icc_profile": b"\1" * 500},
            "optimized": {"quality": 20, "optimize": True},
        }.items():
            images[f"jpeg_{mode}_{label}"] = saved(Image.new(mode, (33, 17)), "JPEG", **params)
    return images


@pytest.fixture(scope="module")
def synthetic() -> dict[str, bytes]:
    return synthetic_images()


def test_every_shared_image_agrees_with_pillow():
    images = sorted(shared_path().glob("*/JPEGImages/*"))
    if not images:
        pytest.skip("no shared images")
    answered = 0
    for path in images:
        fast = read_fast_header(path)
        if fast is not None:
            answered += 1
            assert fast == pillow(path), path
        header = read_image_header(path)
        assert (header.format, header.width, header.height, header.mode) == pillow(path)
    assert answered >= 0.9 * len(images)  # the fast path is the common path


def test_synthetic_variants_agree(synthetic, tmp_path):
    path = tmp_path / "image"
    for label, data in synthetic.items():
        put(path, data)
        assert agrees(path), label


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("png_I;16", ("PNG", 37, 23, "I;16")),
        ("png_16bit_rgb", ("PNG", 31, 7, "RGB")),
        ("png_16bit_rgba", ("PNG", 31, 7, "RGBA")),  # Pillow opens 16-bit LA as RGBA
        ("png_text_icc_dpi", ("PNG", 40, 30, "RGB")),
        ("jpeg_RGB_progressive", ("JPEG", 33, 17, "RGB")),
        ("jpeg_CMYK_baseline", ("JPEG", 33, 17, "CMYK")),
        ("jpeg_L_icc", ("JPEG", 33, 17, "L")),
        ("jpeg_exif_with_dpi", ("JPEG", 33, 17, "RGB")),
    ],
)
def test_common_variants_take_the_fast_path(synthetic, tmp_path, label, expected):
    path = tmp_path / "image"
    put(path, synthetic[label])
    assert read_fast_header(path) == expected


@pytest.mark.parametrize(
    "label", ["apng", "mpo", "bmp", "png_ztxt", "png_bad_colour", "jpeg_exif_no_density"]
)
def test_what_is_not_mirrored_is_left_to_pillow(synthetic, tmp_path, label):
    path = tmp_path / "image"
    put(path, synthetic[label])
    assert read_fast_header(path) is None


def test_truncated_headers_agree_with_pillow(synthetic, tmp_path):
    path = tmp_path / "image"
    for label in ("png_text_icc_dpi", "jpeg_RGB_icc", "jpeg_exif_with_dpi"):
        data = synthetic[label]
        for end in range(0, min(len(data), 900)):
            put(path, data[:end])
            assert agrees(path), (label, end)


def test_corrupted_headers_agree_with_pillow(synthetic, tmp_path):
    rng = random.Random(7)
    path = tmp_path / "image"
    seeds = list(synthetic.values())
    for _ in range(1500):
        data = bytearray(rng.choice(seeds))
        limit = min(len(data), 700)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(limit)] = rng.randrange(256)
        put(path, bytes(data))
        assert agrees(path), bytes(data[:64])


def test_jpeg_fill_bytes_markers_without_length_and_junk(synthetic, tmp_path):
    data = synthetic["jpeg_RGB_baseline"]
    path = tmp_path / "image"
    # fill bytes before a marker, a lone RST marker, and a junk byte between segments
    for variant in (
        data[:2] + b"\xff\xff\xff" + data[2:],
        data[:2] + b"\xff\xd0" + data[2:],
        data[:20] + b"\x00" + data[20:],
    ):
        put(path, variant)
        assert agrees(path)
    put(path, data[:2] + b"\xff\xff\xff" + data[2:])
    assert read_fast_header(path) == ("JPEG", 33, 17, "RGB")


def test_sof_beyond_the_first_read_is_found(synthetic, tmp_path):
    data = synthetic["jpeg_RGB_baseline"]
    comment = b"\xff\xfe" + struct.pack(">H", 60002) + b"c" * 60000  # a 60 kB COM segment
    path = tmp_path / "image"
    put(path, data[:2] + comment + data[2:])
    assert read_fast_header(path) == ("JPEG", 33, 17, "RGB") == pillow(path)


def test_missing_file_other_formats_and_pillow_settings(synthetic, tmp_path, monkeypatch):
    assert read_fast_header(tmp_path / "nope.png") is None
    with pytest.raises(FileNotFoundError):
        read_image_header(tmp_path / "nope.png")
    path = tmp_path / "image"
    put(path, b"not an image at all")
    assert read_fast_header(path) is None
    with pytest.raises(ImageHeaderError, match="not a readable image"):
        read_image_header(path)
    put(path, synthetic["png_RGB"])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert read_fast_header(path) is None
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow warns or refuses: let it
    assert read_fast_header(path) is None


def test_scan_limit_leaves_far_headers_to_pillow(synthetic, tmp_path, monkeypatch):
    data = synthetic["jpeg_RGB_baseline"]
    comment = b"\xff\xfe" + struct.pack(">H", 20002) + b"c" * 20000
    path = tmp_path / "image"
    put(path, data[:2] + comment + data[2:])
    monkeypatch.setattr(fast_header, "MAX_SCAN", 8192)
    assert read_fast_header(path) is None
    assert read_image_header(path).width == 33
