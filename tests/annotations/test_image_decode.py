"""Formats, decoding and every mode to RGB: hand-computed pixels, for training and serving."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodet.annotations.image_decode import (
    IMAGE_FORMATS,
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    decode_image,
    decode_image_file,
    sniff_format,
    to_rgb,
)


def _save(image: Image.Image, path: Path, fmt: str = "PNG", **kwargs: object) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque
    rgba[0, 1] = (200, 100, 50, 0)  # transparent: colour underneath is ignored
    rgba[0, 2] = (200, 100, 50, 128)  # half: (c * 128 + 255 * 127 + 127) // 255
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "named_like_a.jpg")

    out = decode_image_file(path)

    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [(c * 128 + 255 * 127 + 127) // 255 for c in (200, 100, 50)]
    assert out[1, 0].tolist() == [255, 255, 255]


def test_rgba_alpha_drop_keeps_stored_colour(tmp_path: Path) -> None:
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 1] = (200, 100, 50, 0)
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "a.png")
    assert decode_image_file(path, alpha="drop")[0].tolist() == [[0, 0, 0], [200, 100, 50]]


@pytest.mark.parametrize("alpha", ["composite", "drop"])
def test_opaque_rgba_decodes_to_its_rgb(tmp_path: Path, alpha: str) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    rgba[:, :, 3] = 255
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "opaque.png")
    np.testing.assert_array_equal(decode_image_file(path, alpha=alpha), rgba[:, :, :3])


def test_la_is_composited(tmp_path: Path) -> None:
    la = np.array([[[10, 255], [10, 0]]], dtype=np.uint8)
    path = _save(Image.fromarray(la, mode="LA"), tmp_path / "la.png")
    assert decode_image_file(path)[0].tolist() == [[10, 10, 10], [255, 255, 255]]


def test_palette_expands_through_palette(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.putdata([1, 2])
    path = _save(image, tmp_path / "p.png")
    assert decode_image_file(path)[0].tolist() == [[255, 0, 0], [0, 0, 255]]


def test_palette_with_transparent_entry_is_composited(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.putdata([0, 1])
    path = _save(image, tmp_path / "p.png", transparency=0)
    assert decode_image_file(path)[0].tolist() == [[255, 255, 255], [255, 0, 0]]


def test_grayscale_is_repeated_in_three_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 77, 255]], dtype=np.uint8)
    path = _save(Image.fromarray(gray, mode="L"), tmp_path / "g.png")
    assert decode_image_file(path)[0].tolist() == [[0, 0, 0], [77, 77, 77], [255, 255, 255]]


def test_16bit_png_is_scaled_by_255_over_65535(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "d.png")
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = decode_image_file(path)
    assert out[0, :, 0].tolist() == [0, 1, 4, 255]  # round(1000 * 255 / 65535) = 4
    assert (out[..., 0] == out[..., 2]).all()


def test_32bit_integer_mode_is_clipped_to_16_bits() -> None:
    values = np.array([[-5, 32768, 70000]], dtype=np.int32)
    out = to_rgb(Image.fromarray(values, mode="I"))
    assert out[0, :, 1].tolist() == [0, 128, 255]


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    path = _save(Image.fromarray(cmyk, mode="CMYK"), tmp_path / "c.tif", fmt="TIFF")
    assert sniff_format(path.read_bytes()) == "TIFF"
    assert decode_image_file(path)[0].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0]]


def test_format_is_sniffed_from_bytes_not_extension(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (4, 3), (1, 2, 3)), tmp_path / "photo.jpg")
    assert sniff_format(path.read_bytes()) == "PNG"
    assert decode_image_file(path).shape == (3, 4, 3)


def test_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20), (0, 128, 0)).save(path, format="JPEG", exif=exif)
    assert decode_image_file(path).shape == (20, 40, 3)  # stored layout, as annotated


def test_float_images_are_refused_with_a_hint() -> None:
    with pytest.raises(UnsupportedImageError, match="convert the file"):
        to_rgb(Image.fromarray(np.zeros((2, 2), dtype=np.float32), mode="F"))


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(UnsupportedImageError, match=r"x\.png"):
        decode_image_file(garbage)
    with pytest.raises(FileNotFoundError):
        decode_image_file(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="alpha must be"):
        decode_image_file(garbage, alpha="black")  # type: ignore[arg-type]


def test_big_endian_16bit_is_scaled_like_little_endian() -> None:
    values = np.array([[0, 257, 65535]], dtype=np.uint16)
    image = Image.fromarray(values.astype(">u2"))
    assert image.mode == "I;16B"
    assert to_rgb(image)[0, :, 0].tolist() == [0, 1, 255]


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_every_listed_format_is_sniffed_and_decoded(fmt: str) -> None:
    data = _encode(Image.new("RGB", (5, 3), (255, 255, 255)), fmt)
    assert sniff_format(data) == fmt
    decoded = decode_image(data, exif_orientation=False)
    assert (decoded.format, decoded.width, decoded.height) == (fmt, 5, 3)
    assert (decoded.pixels == 255).all()


@pytest.mark.parametrize(
    "data", [b"", b"BMW 320i, 2019, low mileage", b"PARIS", b"%PDF-1.7", b"\x00" * 32]
)
def test_weak_or_missing_signatures_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImageError):
        sniff_format(data)


def test_truncated_and_oversized_images() -> None:
    png = _encode(Image.new("RGB", (40, 30), "white"), "PNG")
    with pytest.raises(CorruptImageError, match="PNG image is truncated or damaged"):
        decode_image(png[: len(png) // 2], exif_orientation=False)
    with pytest.raises(ImageTooLargeError, match="40x30 = 1,200 pixels; the limit is 1,000"):
        decode_image(png, exif_orientation=False, max_pixels=1000)
    assert decode_image(png, exif_orientation=False, max_pixels=1200).width == 40


def test_half_transparent_pixels_and_palettes_by_hand() -> None:
    half_red = Image.new("RGBA", (2, 2), (255, 0, 0, 128))
    assert to_rgb(half_red)[0, 0].tolist() == [255, 127, 127]  # on white
    assert to_rgb(half_red, alpha="drop")[0, 0].tolist() == [255, 0, 0]
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([10, 20, 30] + [0] * 765)
    assert to_rgb(palette)[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_opaque_alpha_gives_the_stored_colours(mode: str) -> None:
    """The opaque fast path equals compositing: alpha 255 everywhere changes nothing."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[:, :, 3] = 255
    image = Image.fromarray(rgba, mode="RGBA").convert(mode)
    expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(to_rgb(image), expected)
    rgba[0, 0, 3] = 254  # one pixel not opaque: the blend path, nearly the same colours
    blended = to_rgb(Image.fromarray(rgba, mode="RGBA").convert(mode))
    assert np.abs(blended.astype(int) - np.asarray(image.convert("RGB"), int)).max() <= 1


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_exif_orientation_only_when_asked_and_a_damaged_exif_block() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise for display
    image = Image.new("RGB", (30, 10), "white")
    data = _encode(image, "JPEG", exif=exif, quality=100)
    upright = decode_image(data, exif_orientation=True)
    assert (upright.width, upright.height) == (10, 30)
    stored = decode_image(data, exif_orientation=False)
    assert (stored.width, stored.height) == (30, 10)
    damaged = bytearray(_encode(image, "JPEG", exif=exif))
    start = damaged.find(b"Exif")
    damaged[start + 10 : start + 30] = b"\xff" * 20
    assert decode_image(bytes(damaged), exif_orientation=True).pixels.shape == (10, 30, 3)


def test_decode_reads_first_frame_of_animations() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("white", "black")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue(), exif_orientation=False)
    assert decoded.pixels[0, 0].tolist() == [255, 255, 255]
