from __future__ import annotations

import random
from collections import Counter

import albumentations as A
import numpy as np
import pytest

from prodet.datasets.augment import LABEL_FIELDS
from prodet.datasets.min_iou_crop import SSD_MIN_IOUS, MinIoURandomCrop, box_iou_with_patch

HEIGHT, WIDTH = 80, 120


def _pipeline(crop: MinIoURandomCrop, seed: int) -> A.Compose:
    pipeline = A.Compose(
        [crop], bbox_params=A.BboxParams(format="pascal_voc", label_fields=list(LABEL_FIELDS))
    )
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.sort(rng.uniform(0, WIDTH, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, HEIGHT, (n, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1] + 1, y[:, 1] + 1], axis=1)
    if rng.random() < 0.5:  # a large object, so that high IoU thresholds can be met
        boxes[0] = [*rng.uniform(0, 15, 2), WIDTH - rng.uniform(0, 15), HEIGHT - rng.uniform(0, 15)]
    return np.minimum(boxes, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(np.float32)


def test_iou_with_patch_by_hand() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]], dtype=np.float64)
    iou = box_iou_with_patch(boxes, (0, 0, 10, 10))
    np.testing.assert_allclose(iou, [1.0, 25 / 175, 0.0])


def test_crop_property_over_many_draws() -> None:
    """Kept boxes are exactly those whose centre is inside the crop; the crop meets its IoU."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    crop = MinIoURandomCrop()
    pipeline = _pipeline(crop, seed=0)
    modes: Counter[float | None] = Counter()
    for _ in range(300):
        boxes = _random_boxes(rng, int(rng.integers(1, 5)))
        n = len(boxes)
        labels = np.arange(1, n + 1)
        out = pipeline(image=image, bboxes=boxes, labels=labels, difficult=labels % 2)

        x1, y1, x2, y2 = crop.params["crop"]
        min_iou = crop.params["min_iou"]
        modes[min_iou] += 1
        assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT
        np.testing.assert_array_equal(out["image"], image[y1:y2, x1:x2])
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
        assert sorted(out["labels"]) == sorted(labels[inside].tolist())
        assert inside.any()
        if min_iou is not None:
            w, h = x2 - x1, y2 - y1
            assert w >= int(0.3 * WIDTH) and h >= int(0.3 * HEIGHT) and 0.5 <= h / w <= 2.0
            assert box_iou_with_patch(boxes.astype(np.float64), (x1, y1, x2, y2)).max() >= min_iou
        for box, label, flag in zip(out["bboxes"], out["labels"], out["difficult"], strict=True):
            src = boxes[label - 1]
            expected = np.clip(src, [x1, y1, x1, y1], [x2, y2, x2, y2]) - [x1, y1, x1, y1]
            np.testing.assert_allclose(box, expected, atol=1e-3)
            assert flag == label % 2
    assert set(modes) == {None, 0.0, *SSD_MIN_IOUS}


def test_image_without_boxes_gets_an_unconstrained_patch() -> None:
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    crop = MinIoURandomCrop(keep_original=False)
    out = _pipeline(crop, seed=3)(image=image, bboxes=np.zeros((0, 4)), labels=[], difficult=[])
    x1, y1, x2, y2 = crop.params["crop"]
    assert crop.params["min_iou"] == 0.0
    assert out["image"].shape == (y2 - y1, x2 - x1, 3)
    assert len(out["bboxes"]) == 0 and len(out["labels"]) == 0


def test_unsatisfiable_constraint_keeps_the_whole_image() -> None:
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    tiny_box = np.array([[0, 0, 1, 1]], dtype=np.float32)  # IoU 0.9 with a >= 30% patch: impossible
    crop = MinIoURandomCrop(min_ious=(0.9,), keep_original=False, unconstrained=False)
    out = _pipeline(crop, seed=0)(image=image, bboxes=tiny_box, labels=[1], difficult=[0])
    assert crop.params == crop.params | {"crop": (0, 0, WIDTH, HEIGHT), "min_iou": None}
    assert out["image"].shape == image.shape and list(out["labels"]) == [1]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match=r"min_ious must lie in \(0, 1\]"):
        MinIoURandomCrop(min_ious=(0.0, 0.5))
    with pytest.raises(ValueError, match="no sampling mode left"):
        MinIoURandomCrop(min_ious=(), keep_original=False, unconstrained=False)
    with pytest.raises(ValueError, match="min_scale"):
        MinIoURandomCrop(min_scale=0.0)
