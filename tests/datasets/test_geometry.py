"""The one resize geometry: hand-computed sizes and pads, pixels, and box round trips."""

from __future__ import annotations

import numpy as np
import pytest

from prodet.datasets.geometry import (
    TRAIN_OVERSAMPLE,
    ResizeGeometry,
    boxes_to_original,
    decode_floor,
    resize_geometry,
    resize_to_input,
    through_reduction,
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


def test_decode_floor_is_the_side_that_matters() -> None:
    assert decode_floor(320, "stretch") == (320, 320)  # both sides are scaled to 320
    assert decode_floor(320, "letterbox") == (0, 320)  # only the longer one
    assert decode_floor(300, "stretch", oversample=TRAIN_OVERSAMPLE) == (600, 600)
    assert decode_floor(300, "letterbox", oversample=1.5) == (0, 450)
    with pytest.raises(ValueError, match="oversample must be >= 1"):
        decode_floor(320, "stretch", oversample=0.5)
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        decode_floor(320, "crop")


def _block_means(pixels: np.ndarray, factor: int) -> np.ndarray:
    """What a 1/factor DCT decode gives, ideally: each factor x factor block's mean."""
    height, width = pixels.shape[0] // factor, pixels.shape[1] // factor
    blocks = pixels[: height * factor, : width * factor].reshape(height, factor, width, factor, 3)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_a_region_of_reduced_pixels_resizes_like_the_original(mode: str) -> None:
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8).repeat(40, 0).repeat(40, 1)
    geometry = resize_geometry(640, 480, 64, mode)
    full = resize_to_input(smooth, geometry, fill=(9, 9, 9))
    # 1/8 of 640 x 480, plus a partial block column and row as libjpeg leaves them
    reduced = np.pad(_block_means(smooth, 8), ((0, 1), (0, 1), (0, 0)), mode="edge")
    out = resize_to_input(reduced, geometry, fill=(9, 9, 9), region=(0.0, 0.0, 80.0, 60.0))
    assert out.shape == full.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - full.astype(int)).mean() < 4.0
    whole = resize_to_input(smooth, geometry, fill=(9, 9, 9), region=(0.0, 0.0, 640.0, 480.0))
    np.testing.assert_array_equal(whole, full)
    with pytest.raises(ValueError, match="is not inside the 81x61 image"):
        resize_to_input(reduced, geometry, region=(0.0, 0.0, 82.0, 60.0))


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize(("width", "height", "factor"), [(1600, 1200, 4), (1601, 1203, 8)])
def test_a_reduced_images_geometry_maps_back_to_the_original(
    mode: str, width: int, height: int, factor: int
) -> None:
    boxes = np.float64([[0, 0, width, height], [100.5, 33.25, 900.0, 1001.75]])
    reduced = (-(-width // factor), -(-height // factor))  # ceil: a partial block kept
    scale = (1 / factor, 1 / factor)
    on_reduced = resize_geometry(*reduced, 96, mode)
    composed = through_reduction(on_reduced, (width, height), scale)
    assert composed.original == (width, height)
    sx, sy = on_reduced.scale
    px, py = on_reduced.pad
    on_input = boxes / factor * [sx, sy, sx, sy] + [px, py, px, py]
    np.testing.assert_allclose(boxes_to_original(on_input, composed), boxes, atol=1e-6)
