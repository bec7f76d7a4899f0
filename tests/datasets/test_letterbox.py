from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from prodet.datasets.augment import LABEL_FIELDS
from prodet.datasets.letterbox import boxes_to_original, resize_geometry, resize_transforms

FILL = (124.0, 116.0, 104.0)


def _run(image: np.ndarray, boxes: np.ndarray, size: int, mode: str) -> dict:
    pipeline = A.Compose(
        resize_transforms(size, mode, FILL),  # type: ignore[arg-type]
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=list(LABEL_FIELDS)),
    )
    n = len(boxes)
    return pipeline(image=image, bboxes=boxes, labels=np.arange(n), difficult=np.zeros(n))


@pytest.mark.parametrize(("height", "width"), [(48, 64), (64, 48), (37, 101), (300, 299), (20, 20)])
@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_geometry_matches_what_albumentations_does(height: int, width: int, mode: str) -> None:
    size = 64
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    boxes = np.array([[0, 0, width, height], [3, 2, width / 2, height / 3]], dtype=np.float32)

    out = _run(image, boxes, size, mode)
    geo = resize_geometry(height, width, size, mode)  # type: ignore[arg-type]

    assert out["image"].shape == (size, size, 3)
    new_w, new_h = geo.resized
    left, top = geo.pad
    # the whole-image box lands exactly on the resized image inside the padding
    np.testing.assert_allclose(out["bboxes"][0], [left, top, left + new_w, top + new_h], atol=1e-3)
    expected = boxes[1] * np.array(geo.scale * 2) + np.array(geo.pad * 2)
    np.testing.assert_allclose(out["bboxes"][1], expected, atol=1e-3)
    if mode == "letterbox":
        assert max(new_w, new_h) == size
        assert (out["image"][top : top + new_h, left : left + new_w] == 255).all()
        padded = out["image"].copy()
        padded[top : top + new_h, left : left + new_w] = FILL
        assert (padded == np.array(FILL, dtype=np.uint8)).all()


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_mapping_back_to_original_round_trips_a_box(mode: str) -> None:
    height, width, size = 75, 130, 96
    box = np.array([[12.5, 7.0, 101.25, 70.0]], dtype=np.float32)
    out = _run(np.zeros((height, width, 3), np.uint8), box, size, mode)
    geo = resize_geometry(height, width, size, mode)  # type: ignore[arg-type]

    predicted = np.asarray(out["bboxes"], dtype=np.float32)
    back = boxes_to_original(predicted, geo.scale, geo.pad, (height, width))
    np.testing.assert_allclose(back, box, atol=1e-3)
    back_t = boxes_to_original(torch.from_numpy(predicted), geo.scale, geo.pad, (height, width))
    assert back_t.dtype == torch.float32
    np.testing.assert_allclose(back_t.numpy(), box, atol=1e-3)


def test_mapping_back_clips_to_the_original_image() -> None:
    geo = resize_geometry(50, 100, 100, "letterbox")
    assert geo.pad == (0, 25) and geo.scale == (1.0, 1.0)
    inside_padding = np.array([[-5.0, 0.0, 120.0, 100.0]], dtype=np.float32)
    back = boxes_to_original(inside_padding, geo.scale, geo.pad, (50, 100))
    assert back.tolist() == [[0.0, 0.0, 100.0, 50.0]]


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(ValueError, match="resize_mode must be one of stretch, letterbox"):
        resize_geometry(10, 10, 32, "crop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        boxes_to_original(np.zeros((3,), np.float32), (1.0, 1.0), (0, 0), (4, 4))
