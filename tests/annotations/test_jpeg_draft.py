"""Reduced-size JPEG decoding: the DCT factor rule, where the original lies in the pixels
(orientation and partial blocks included), and awkward JPEGs decoding as in full."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prodet.annotations.image_decode import CorruptImageError, decode_image
from prodet.annotations.jpeg_draft import reduced_size, reduction_for
from prodet.annotations.orientation import orient_box
from tests.annotations.jpeg_samples import (
    encode,
    scene,
    with_big_thumbnail,
    with_orientation,
)

SQUARE = (240, 160, 400, 320)  # x1, y1, x2, y2 of the white square in the 1001 x 601 scene


def test_reduction_rule_by_hand() -> None:
    assert reduction_for(4032, 3024, (320, 320)) == 8  # 378 x 504 still >= 320
    assert reduction_for(4032, 3024, (640, 640)) == 4  # 756 >= 640, 378 is not
    assert reduction_for(4032, 3024, (0, 320)) == 8  # letterbox: only the longer side
    assert reduction_for(4032, 3024, (0, 1100)) == 2  # 1008 < 1100 <= 2016
    assert reduction_for(3024, 4032, (640, 640)) == 4  # the same for the turned photo
    assert reduction_for(600, 400, (320, 320)) == 1  # too small to reduce
    assert reduced_size(1001, 601, 8) == (126, 76)
    with pytest.raises(ValueError, match="min_sides must be >= 0"):
        reduction_for(10, 10, (-1, 5))


def _bright_centre(pixels: np.ndarray) -> tuple[float, float]:
    """Centre of mass of the brightness above the background ramp (at most 140)."""
    weight = np.clip(pixels.mean(axis=2) - 150.0, 0.0, None)
    ys, xs = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]] + 0.5
    return float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_region_locates_the_original_in_reduced_pixels(orientation: int) -> None:
    """1001 x 601 is no multiple of 8: the partial last block must not shift anything."""
    data = with_orientation(scene(1001, 601, SQUARE), orientation, quality=95)
    full = decode_image(data, exif_orientation=True)
    fast = decode_image(data, exif_orientation=True, min_sides=(64, 64))
    assert fast.size == full.size == (full.pixels.shape[1], full.pixels.shape[0])
    assert fast.reduced and not full.reduced
    assert sorted(fast.pixels.shape[:2]) == [76, 126]  # ceil(601 / 8), ceil(1001 / 8)
    assert fast.scale == (0.125, 0.125)
    square = orient_box(SQUARE, (1001, 601), orientation)  # on the upright original
    on_fast = fast.boxes_to_pixels(np.asarray([square], np.float64))[0]
    cx, cy = _bright_centre(fast.pixels)
    assert abs(cx - (on_fast[0] + on_fast[2]) / 2) < 0.05  # 0.4 original pixels
    assert abs(cy - (on_fast[1] + on_fast[3]) / 2) < 0.05
    region = np.asarray(fast.region)
    assert region[2] - region[0] == pytest.approx(fast.size[0] / 8)
    assert region[3] - region[1] == pytest.approx(fast.size[1] / 8)


def test_other_formats_and_small_jpegs_decode_in_full() -> None:
    image = scene(1001, 601, SQUARE)
    for data in (encode(image, "PNG"), encode(image, "WEBP", lossless=True)):
        decoded = decode_image(data, exif_orientation=True, min_sides=(64, 64))
        assert not decoded.reduced and decoded.region == (0.0, 0.0, 1001.0, 601.0)
    small = decode_image(encode(image), exif_orientation=True, min_sides=(600, 1000))
    assert not small.reduced and small.pixels.shape == (601, 1001, 3)


def _close_to_full(data: bytes, min_sides: tuple[int, int] = (64, 64)) -> None:
    full = decode_image(data, exif_orientation=True)
    fast = decode_image(data, exif_orientation=True, min_sides=min_sides)
    assert fast.reduced and fast.size == full.size
    height, width = fast.pixels.shape[:2]
    expected = Image.fromarray(full.pixels).resize((width, height), Image.Resampling.BOX)
    difference = np.abs(fast.pixels.astype(int) - np.asarray(expected, int))
    assert difference.mean() < 3.0, difference.mean()


def test_progressive_cmyk_and_grayscale_jpegs_reduce_like_the_full_decode() -> None:
    image = scene(1024, 608, SQUARE)
    _close_to_full(encode(image, progressive=True, quality=90))
    _close_to_full(encode(image.convert("CMYK"), quality=95))
    _close_to_full(encode(image.convert("L"), quality=95))


def test_a_thumbnail_larger_than_the_image_changes_nothing() -> None:
    main = scene(512, 304, (100, 100, 200, 200))
    data = with_big_thumbnail(main, Image.new("RGB", (1600, 1200), (200, 30, 30)))
    full = decode_image(data, exif_orientation=True)
    assert full.size == (512, 304)
    _close_to_full(data)


@pytest.mark.parametrize("value", [9, 0, "abc"])
def test_a_lying_orientation_tag_keeps_the_stored_layout(value: int | str) -> None:
    data = with_orientation(scene(1001, 601, SQUARE), value)
    fast = decode_image(data, exif_orientation=True, min_sides=(64, 64))
    assert fast.size == (1001, 601) and fast.region[:2] == (0.0, 0.0)
    _close_to_full(data)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpegs_fail_as_in_full(keep: float) -> None:
    data = encode(scene(1001, 601, SQUARE), quality=90)
    cut = data[: int(len(data) * keep)]
    for min_sides in (None, (64, 64)):
        with pytest.raises(CorruptImageError, match="JPEG image is truncated or damaged"):
            decode_image(cut, exif_orientation=True, min_sides=min_sides)
