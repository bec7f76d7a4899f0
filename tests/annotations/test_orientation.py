"""EXIF orientation: boxes move exactly as Pillow moves the pixels; a lying tag means 1."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from prodet.annotations.orientation import (
    INVERSE,
    orient_box,
    orient_size,
    orientation_of,
    upright,
)
from tests.annotations.jpeg_samples import encode, with_orientation


def _marked(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    pixels = np.zeros((height, width), np.uint8)
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = 255
    return Image.fromarray(pixels)


def _extent(image: Image.Image) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(np.asarray(image))
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_follow_the_pixels_of_every_orientation(orientation: int) -> None:
    box = (3, 5, 11, 9)  # off-centre and not square, so every mirror and turn shows
    stored = _marked(20, 12, box)
    turned = upright(stored, orientation)
    assert turned.size == orient_size(stored.size, orientation)
    assert orient_box(box, stored.size, orientation) == _extent(turned)
    back = orient_box(_extent(turned), turned.size, INVERSE[orientation])
    assert back == box


def test_the_turns_phones_write() -> None:
    # 6: turned 90 degrees clockwise for display; a box at the stored top-left corner
    # ends at the top-right corner of the portrait view.
    assert orient_box((0, 0, 4, 2), (40, 30), 6) == (28, 0, 30, 4)
    assert orient_box((0, 0, 4, 2), (40, 30), 8) == (0, 36, 2, 40)
    assert orient_size((4032, 3024), 6) == (3024, 4032)


@pytest.mark.parametrize("value", [1, 6, 8, 3])
def test_valid_tags_are_read(value: int) -> None:
    data = with_orientation(Image.new("RGB", (8, 4)), value)
    assert orientation_of(Image.open(io.BytesIO(data))) == value


@pytest.mark.parametrize("value", [0, 9, 65535, "abc"])
def test_lying_tags_mean_as_stored(value: int | str) -> None:
    data = with_orientation(Image.new("RGB", (8, 4)), value)
    assert orientation_of(Image.open(io.BytesIO(data))) == 1


def test_no_exif_block_means_as_stored() -> None:
    assert orientation_of(Image.open(io.BytesIO(encode(Image.new("RGB", (8, 4)))))) == 1


def test_bad_orientation_argument_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"EXIF orientation must be 1\.\.8, got 9"):
        orient_box((0, 0, 1, 1), (4, 4), 9)
