"""``ResizeToInput`` moves pixels and boxes exactly as ``datasets.geometry`` says."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from prodet.datasets.augment import LABEL_FIELDS
from prodet.datasets.geometry import boxes_to_original, resize_geometry
from prodet.datasets.letterbox import ResizeToInput

FILL = (124.0, 116.0, 104.0)


def _run(image: np.ndarray, boxes: np.ndarray, size: int, mode: str) -> dict:
    pipeline = A.Compose(
        [ResizeToInput(size, mode, FILL)],  # type: ignore[arg-type]
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
    geo = resize_geometry(width, height, size, mode)

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
    geo = resize_geometry(width, height, size, mode)

    back = boxes_to_original(np.asarray(out["bboxes"], dtype=np.float32), geo)
    np.testing.assert_allclose(back, box, atol=1e-3)


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(ValueError, match="resize_mode must be one of stretch, letterbox"):
        ResizeToInput(32, "crop", FILL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one value per RGB channel"):
        ResizeToInput(32, "letterbox", (1.0,))
