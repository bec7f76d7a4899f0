"""The one resize geometry: hand-computed sizes and pads, pixels, and box round trips."""

from __future__ import annotations

import numpy as np
import pytest

from prodet.datasets.geometry import (
    ResizeGeometry,
    boxes_to_original,
    resize_geometry,
    resize_to_input,
)


def test_letterbox_and_stretch_geometry_by_hand() -> None:
    wide = resize_geometry(128, 64, 64, "letterbox")
    assert (wide.scale, wide.pad, wide.resized) == ((0.5, 0.5), (0, 16), (64, 32))
    assert (wide.original, wide.input_size) == ((128, 64), (64, 64))
    # 100x61 -> 64x39 (61 * 0.64 = 39.04); 25 rows of padding: 12 on top, 13 below.
    odd = resize_geometry(100, 61, 64, "letterbox")
    assert (odd.pad, odd.resized) == ((0, 12), (64, 39))
    tall = resize_geometry(61, 100, 64, "letterbox")
    assert (tall.pad, tall.resized) == ((12, 0), (39, 64))
    stretch = resize_geometry(128, 32, 64, "stretch")
    assert (stretch.scale, stretch.pad, stretch.resized) == ((0.5, 2.0), (0, 0), (64, 64))


@pytest.mark.parametrize(
    ("width", "height", "mode"),
    [(640, 480, "letterbox"), (333, 517, "letterbox"), (640, 480, "stretch"), (7, 5, "stretch")],
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
    back = boxes_to_original(on_input, geometry)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_boxes_in_the_padding_are_clipped_to_the_image() -> None:
    geometry = resize_geometry(100, 50, 100, "letterbox")
    assert geometry.pad == (0, 25) and geometry.scale == (1.0, 1.0)
    back = boxes_to_original(np.float32([[-5, 0, 120, 100]]), geometry)
    assert back.tolist() == [[0.0, 0.0, 100.0, 50.0]]


def test_letterbox_pixels_are_the_image_inside_the_fill() -> None:
    white = np.full((64, 128, 3), 255, np.uint8)
    out = resize_to_input(white, resize_geometry(128, 64, 64, "letterbox"), fill=(123.7, 0, 9))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[16:48] == 255).all()
    assert (out[:16] == [124, 0, 9]).all() and (out[48:] == [124, 0, 9]).all()


def test_identity_geometry_leaves_pixels_and_boxes_alone() -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    identity = ResizeGeometry.identity(7, 5)
    np.testing.assert_array_equal(resize_to_input(pixels, identity), pixels)
    boxes = np.float32([[1, 1, 6, 4]])
    np.testing.assert_array_equal(boxes_to_original(boxes, identity), boxes)


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(ValueError, match="resize_mode must be one of stretch, letterbox"):
        resize_geometry(10, 10, 32, "crop")
    with pytest.raises(ValueError, match="sizes must be positive"):
        resize_geometry(0, 10, 32, "stretch")
    geometry = resize_geometry(4, 3, 8, "stretch")
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        boxes_to_original(np.zeros((3,), np.float32), geometry)
    with pytest.raises(ValueError, match="computed for 4x3"):
        resize_to_input(np.zeros((4, 3, 3), np.uint8), geometry)
