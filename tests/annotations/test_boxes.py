"""Box convention and clean-up rules on hand-made objects."""

from __future__ import annotations

import numpy as np
import pytest

from prodet.annotations.boxes import box_iou, voc_to_xyxy, xyxy_to_voc
from prodet.annotations.voc_xml import RawObject
from tests.annotations.voc_factory import clean_arrays


def obj(index, xmin, ymin, xmax, ymax, name="can", difficult=False) -> RawObject:
    return RawObject(index, name, xmin, ymin, xmax, ymax, difficult, False, "Unspecified")


def test_voc_one_based_inclusive_to_zero_based_continuous():
    # VOC pixels 1..100 inclusive cover the whole 100-pixel-wide image: [0, 100].
    assert voc_to_xyxy(1, 1, 100, 50) == (0.0, 0.0, 100, 50)
    assert xyxy_to_voc(*voc_to_xyxy(12, 7, 30, 40)) == (12, 7, 30, 40)


def test_box_iou_uses_continuous_areas():
    # Overlap 5 x 10 = 50, union 100 + 100 - 50 = 150. The devkit's +1 would give
    # 6 * 11 / (121 + 121 - 66) = 0.375.
    a, b = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]
    iou = box_iou(np.array([a]), np.array([[5.0, 0.0, 15.0, 10.0], b]))
    assert iou.dtype == np.float64 and iou.shape == (1, 2)
    np.testing.assert_allclose(iou, [[1 / 3, 0.0]])


def test_box_iou_of_empty_and_degenerate_boxes_is_zero():
    point = [5.0, 5.0, 5.0, 5.0]
    inverted = [10.0, 10.0, 0.0, 0.0]  # x2 < x1: no area, not a negative one
    iou = box_iou(np.array([point, inverted]), np.array([point, [0.0, 0.0, 10.0, 10.0]]))
    np.testing.assert_array_equal(iou, [[0.0, 0.0], [0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), np.array([point])).shape == (0, 1)


def test_good_box_is_kept_as_float32():
    clean, problems = clean_arrays(
        (obj(0, 11, 21, 50, 60, difficult=True),), 100, 80, "a.xml", "fail"
    )
    assert problems == []
    assert clean.boxes.dtype == np.float32
    np.testing.assert_array_equal(clean.boxes, [[10, 20, 50, 60]])
    assert clean.names == ("can",) and clean.difficult.tolist() == [True]


def test_partly_outside_box_is_clipped_and_reported():
    clean, problems = clean_arrays((obj(3, 50, 10, 140, 999),), 100, 80, "a.xml", "skip")
    np.testing.assert_array_equal(clean.boxes, [[49, 9, 100, 80]])
    assert [(p.kind, p.object_index, p.file) for p in problems] == [("clipped_box", 3, "a.xml")]


def test_one_pixel_overshoot_is_tolerated_silently():
    # Tools writing 0-based coordinates produce xmin=0 -> x1=-1.
    clean, problems = clean_arrays((obj(0, 0, 0, 100, 80),), 100, 80, "a.xml", "fail")
    np.testing.assert_array_equal(clean.boxes, [[0, 0, 100, 80]])
    assert problems == []


@pytest.mark.parametrize(
    "box", [(150, 10, 160, 20), (101, 10, 120, 20), (10, 90, 40, 120), (-50, 5, -10, 9)]
)
def test_degenerate_or_outside_boxes_are_dropped(box):
    clean, problems = clean_arrays((obj(0, *box),), 100, 80, "a.xml", "repair")
    assert clean.boxes.shape == (0, 4)
    assert [p.kind for p in problems] == ["degenerate_box"]


@pytest.mark.parametrize(("mode", "kept"), [("repair", 1), ("skip", 0), ("fail", 0)])
def test_inverted_box_depends_on_mode(mode, kept):
    # xmin 300 > xmax 283 and ymax past the 480 px height (the zoo's synthetic case).
    clean, problems = clean_arrays((obj(0, 300, 103, 283, 999),), 374, 480, "d.xml", mode)
    assert len(clean.boxes) == kept
    assert problems[0].kind == "inverted_box" and problems[0].is_error
    if kept:
        np.testing.assert_array_equal(clean.boxes, [[282, 102, 300, 480]])
        assert [p.kind for p in problems] == ["inverted_box", "clipped_box"]


def test_unknown_class_is_dropped_and_reported():
    objects = (obj(0, 1, 1, 10, 10, name="can"), obj(1, 1, 1, 10, 10, name="dog"))
    clean, problems = clean_arrays(objects, 20, 20, "a.xml", "skip", frozenset({"can"}))
    assert clean.names == ("can",)
    assert [(p.kind, p.object_index) for p in problems] == [("unknown_class", 1)]


def test_bad_mode_is_a_value_error():
    with pytest.raises(ValueError, match="on_error must be one of"):
        clean_arrays((), 10, 10, "a.xml", "ignore")
