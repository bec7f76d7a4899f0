"""Decoding, resizing and box mapping: hand-computed values, round trips, training parity."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from prodet.serve.image_decode import UnsupportedImageError, decode_image, sniff_format, to_rgb
from prodet.serve.model_contract import parse_metadata
from prodet.serve.preprocess import boxes_to_original, resize_geometry, to_model_input

from tests.serve.conftest import encode
from tests.serve.tiny_model import metadata

META = parse_metadata(metadata())
PAD_VALUE = (128 / 255 - 0.5) / 0.25


def test_letterbox_geometry_by_hand() -> None:
    wide = resize_geometry(128, 64, 64, "letterbox")
    assert (wide.scale, wide.pad, wide.resized) == ((0.5, 0.5), (0, 16), (64, 32))
    # 100x61 -> 64x39 (61 * 0.64 = 39.04); 25 rows of padding: 12 on top, 13 below.
    odd = resize_geometry(100, 61, 64, "letterbox")
    assert (odd.pad, odd.resized) == ((0, 12), (64, 39))
    stretch = resize_geometry(128, 32, 64, "stretch")
    assert (stretch.scale, stretch.pad) == ((0.5, 2.0), (0, 0))


@pytest.mark.parametrize(
    ("width", "height", "mode"),
    [(640, 480, "letterbox"), (333, 517, "letterbox"), (640, 480, "stretch")],
)
def test_boxes_round_trip(width: int, height: int, mode: str) -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 1, (50, 4)) * [width, height, width, height]
    boxes = np.concatenate(
        [np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])],
        axis=1,
    ).astype(np.float32)
    geometry = resize_geometry(width, height, 300, mode)
    sx, sy = geometry.scale
    px, py = geometry.pad
    on_input = boxes * np.float32([sx, sy, sx, sy]) + np.float32([px, py, px, py])
    back = boxes_to_original(on_input, geometry, width, height)
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_boxes_are_clipped_to_the_image() -> None:
    geometry = resize_geometry(128, 64, 64, "letterbox")
    back = boxes_to_original(np.float32([[-5, 0, 70, 64]]), geometry, 128, 64)
    assert back.tolist() == [[0.0, 0.0, 128.0, 64.0]]


def test_model_input_values() -> None:
    white = np.full((64, 128, 3), 255, np.uint8)
    tensor, geometry = to_model_input(white, META)
    assert geometry.pad == (0, 16)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 16:48], 2.0, atol=1e-6)  # (1 - 0.5) / 0.25
    np.testing.assert_allclose(tensor[:, :16], PAD_VALUE, atol=1e-6)
    np.testing.assert_allclose(tensor[:, 48:], PAD_VALUE, atol=1e-6)


def test_mode_conversions_match_training_rules() -> None:
    half_red = Image.new("RGBA", (2, 2), (255, 0, 0, 128))
    assert to_rgb(half_red)[0, 0].tolist() == [255, 127, 127]  # on white
    sixteen = Image.fromarray(np.full((2, 2), 257, np.uint16))
    assert to_rgb(sixteen)[0, 0].tolist() == [1, 1, 1]  # 257 * 255 / 65535
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


def test_sniffing_ignores_names_and_weak_signatures() -> None:
    assert sniff_format(encode(Image.new("RGB", (4, 4)), "WEBP")) == "WEBP"
    assert sniff_format(encode(Image.new("RGB", (4, 4)), "BMP")) == "BMP"
    with pytest.raises(UnsupportedImageError):
        sniff_format(b"BMW 320i, 2019, low mileage")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_exif_rotation_and_a_damaged_exif_block() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise for display
    image = Image.new("RGB", (30, 10), "white")
    image.putpixel((0, 0), (255, 0, 0))
    upright = decode_image(encode(image, "JPEG", exif=exif, quality=100), max_pixels=10**6)
    assert (upright.width, upright.height) == (10, 30)
    damaged = bytearray(encode(image, "JPEG", exif=exif))
    start = damaged.find(b"Exif")
    damaged[start + 10 : start + 30] = b"\xff" * 20
    assert decode_image(bytes(damaged), max_pixels=10**6).pixels.shape[2] == 3


def test_letterbox_matches_training_pixels() -> None:
    """The service's Pillow resize stays within a few gray levels of training's OpenCV one."""
    pytest.importorskip("albumentations", reason="training stack (prodet[train]) not installed")
    import albumentations as A
    from prodet.datasets.letterbox import resize_geometry as training_geometry
    from prodet.datasets.letterbox import resize_transforms

    rng = np.random.default_rng(1)
    smooth = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((400, 300))
    pixels = np.asarray(smooth)
    for size in (64, 512):  # downscale and upscale
        meta_size = parse_metadata(metadata(input_size=str(size)))
        ours, geometry = to_model_input(pixels, meta_size)
        theirs = A.Compose(resize_transforms(size, "letterbox", [128, 128, 128]))(image=pixels)
        reference = (theirs["image"].astype(np.float32) / 255 - 0.5) / 0.25
        difference = np.abs(ours.transpose(1, 2, 0) - reference) * 0.25 * 255
        assert difference.mean() < 1.5 and np.percentile(difference, 99) < 8
        train = training_geometry(300, 400, size, "letterbox")
        assert (train.scale, train.pad, train.resized) == (
            geometry.scale,
            geometry.pad,
            geometry.resized,
        )


def test_decode_reads_first_frame_of_animations() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("white", "black")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue(), max_pixels=100)
    assert decoded.pixels[0, 0].tolist() == [255, 255, 255]
