from __future__ import annotations

import random

import albumentations as A
import numpy as np
import pytest

from prodet.datasets.augment import LABEL_FIELDS
from prodet.datasets.zoom_out import ZoomOut

FILL = (10.0, 20.0, 30.0)


def _pipeline(zoom: ZoomOut, seed: int) -> A.Compose:
    pipeline = A.Compose(
        [zoom], bbox_params=A.BboxParams(format="pascal_voc", label_fields=list(LABEL_FIELDS))
    )
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline


@pytest.mark.parametrize("seed", range(8))
def test_zoom_out_moves_boxes_with_their_pixels(seed: int) -> None:
    height, width = 30, 40
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 40, 30], [5, 7, 19, 23], [30, 2, 40, 9]], dtype=np.float32)
    zoom = ZoomOut(max_ratio=4.0, fill=FILL, p=1.0)

    out = _pipeline(zoom, seed)(image=image, bboxes=boxes, labels=[1, 2, 3], difficult=[0, 0, 1])

    canvas_h, canvas_w = out["image"].shape[:2]
    assert height <= canvas_h <= 4 * height and width <= canvas_w <= 4 * width
    left, top = zoom.params["offset"]
    assert list(out["labels"]) == [1, 2, 3]
    np.testing.assert_allclose(out["bboxes"], boxes + np.array([left, top, left, top]), atol=1e-3)
    for (x1, y1, x2, y2), (u1, v1, u2, v2) in zip(
        boxes.astype(int), out["bboxes"].round().astype(int), strict=True
    ):
        np.testing.assert_array_equal(out["image"][v1:v2, u1:u2], image[y1:y2, x1:x2])
    canvas = out["image"].copy()
    canvas[top : top + height, left : left + width] = FILL
    assert (canvas == np.array(FILL, dtype=np.uint8)).all()


def test_ratio_one_is_the_identity() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = _pipeline(ZoomOut(max_ratio=1.0, p=1.0), 0)(
        image=image, bboxes=[[0, 0, 3, 2]], labels=[1], difficult=[0]
    )
    np.testing.assert_array_equal(out["image"], image)
    np.testing.assert_allclose(out["bboxes"], [[0, 0, 3, 2]])


def test_empty_boxes_pass_through() -> None:
    image = np.full((8, 8, 3), 200, dtype=np.uint8)
    zoom = ZoomOut(fill=FILL, p=1.0)
    out = _pipeline(zoom, 1)(
        image=image, bboxes=np.zeros((0, 4), np.float32), labels=[], difficult=[]
    )
    assert len(out["bboxes"]) == 0
    left, top = zoom.params["offset"]
    canvas = out["image"].copy()
    np.testing.assert_array_equal(canvas[top : top + 8, left : left + 8], image)
    canvas[top : top + 8, left : left + 8] = FILL
    assert (canvas == np.array(FILL, dtype=np.uint8)).all()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_ratio must be >= 1"):
        ZoomOut(max_ratio=0.5)
    with pytest.raises(ValueError, match="one value or one per channel"):
        _pipeline(ZoomOut(fill=(1.0, 2.0), p=1.0), 0)(
            image=np.zeros((4, 4, 3), np.uint8), bboxes=[], labels=[], difficult=[]
        )
