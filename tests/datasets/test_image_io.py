from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prodet.datasets.image_io import ImageDecodeError, decode_image, pil_to_rgb, sniff_format


def _save(image: Image.Image, path: Path, fmt: str = "PNG", **kwargs: object) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque
    rgba[0, 1] = (200, 100, 50, 0)  # transparent: colour underneath is ignored
    rgba[0, 2] = (200, 100, 50, 128)  # half: (c * 128 + 255 * 127 + 127) // 255
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "named_like_a.jpg")

    out = decode_image(path)

    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [(c * 128 + 255 * 127 + 127) // 255 for c in (200, 100, 50)]
    assert out[1, 0].tolist() == [255, 255, 255]


def test_rgba_alpha_drop_keeps_stored_colour(tmp_path: Path) -> None:
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 1] = (200, 100, 50, 0)
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "a.png")
    assert decode_image(path, alpha="drop")[0].tolist() == [[0, 0, 0], [200, 100, 50]]


@pytest.mark.parametrize("alpha", ["composite", "drop"])
def test_opaque_rgba_decodes_to_its_rgb(tmp_path: Path, alpha: str) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    rgba[:, :, 3] = 255
    path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "opaque.png")
    np.testing.assert_array_equal(decode_image(path, alpha=alpha), rgba[:, :, :3])


def test_la_is_composited(tmp_path: Path) -> None:
    la = np.array([[[10, 255], [10, 0]]], dtype=np.uint8)
    path = _save(Image.fromarray(la, mode="LA"), tmp_path / "la.png")
    assert decode_image(path)[0].tolist() == [[10, 10, 10], [255, 255, 255]]


def test_palette_expands_through_palette(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.putdata([1, 2])
    path = _save(image, tmp_path / "p.png")
    assert decode_image(path)[0].tolist() == [[255, 0, 0], [0, 0, 255]]


def test_palette_with_transparent_entry_is_composited(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.putdata([0, 1])
    path = _save(image, tmp_path / "p.png", transparency=0)
    assert decode_image(path)[0].tolist() == [[255, 255, 255], [255, 0, 0]]


def test_grayscale_is_repeated_in_three_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 77, 255]], dtype=np.uint8)
    path = _save(Image.fromarray(gray, mode="L"), tmp_path / "g.png")
    assert decode_image(path)[0].tolist() == [[0, 0, 0], [77, 77, 77], [255, 255, 255]]


def test_16bit_png_is_scaled_by_255_over_65535(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "d.png")
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = decode_image(path)
    assert out[0, :, 0].tolist() == [0, 1, 4, 255]  # round(1000 * 255 / 65535) = 4
    assert (out[..., 0] == out[..., 2]).all()


def test_32bit_integer_mode_is_clipped_to_16_bits() -> None:
    values = np.array([[-5, 32768, 70000]], dtype=np.int32)
    out = pil_to_rgb(Image.fromarray(values, mode="I"))
    assert out[0, :, 1].tolist() == [0, 128, 255]


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    path = _save(Image.fromarray(cmyk, mode="CMYK"), tmp_path / "c.tif", fmt="TIFF")
    assert sniff_format(path) == "TIFF"
    assert decode_image(path)[0].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0]]


def test_format_is_sniffed_from_bytes_not_extension(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (4, 3), (1, 2, 3)), tmp_path / "photo.jpg")
    assert sniff_format(path) == "PNG"
    assert decode_image(path).shape == (3, 4, 3)


def test_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20), (0, 128, 0)).save(path, format="JPEG", exif=exif)
    assert decode_image(path).shape == (20, 40, 3)  # stored layout, as annotated


def test_float_images_are_refused_with_a_hint() -> None:
    with pytest.raises(ImageDecodeError, match="convert the file"):
        pil_to_rgb(Image.fromarray(np.zeros((2, 2), dtype=np.float32), mode="F"))


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageDecodeError, match=r"x\.png"):
        decode_image(garbage)
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="alpha must be"):
        decode_image(garbage, alpha="black")  # type: ignore[arg-type]


def test_big_endian_16bit_is_scaled_like_little_endian() -> None:
    values = np.array([[0, 257, 65535]], dtype=np.uint16)
    image = Image.fromarray(values.astype(">u2"))
    assert image.mode == "I;16B"
    assert pil_to_rgb(image)[0, :, 0].tolist() == [0, 1, 255]
