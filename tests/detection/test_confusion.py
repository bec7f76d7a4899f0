"""The confusion matrix on hand-made boxes: every count is derived in a comment."""

from __future__ import annotations

import numpy as np
import pytest

from prodet.detection.confusion import confusion_csv, confusion_matrix, write_confusion
from tests.detection.detections import CLASSES, A, B, C, gt, pred


def test_hand_computed_matrix():
    truth = [
        gt([A, B, C], [1, 2, 3], difficult=[False, False, True]),
        gt([A, [50.0, 50.0, 60.0, 60.0]], [1, 2]),
        gt([A, [0.0, 2.0, 10.0, 12.0]], [1, 2]),
    ]
    preds = [
        pred(
            [A, [20, 20, 30, 35], [0, 0, 10, 12], C, C, [80, 80, 90, 90]],
            [0.9, 0.8, 0.7, 0.6, 0.55, 0.5],
            [1, 1, 1, 3, 2, 2],
        ),
        pred([A, [5, 0, 15, 10]], [0.05, 0.3], [1, 3]),
        pred([[0, 0.5, 10, 10.5], A], [0.9, 0.8], [2, 1]),
    ]
    matrix = confusion_matrix(truth, preds, CLASSES, score_threshold=0.1)
    # Image 1: A as bottle [1, 1]; B as bottle (IoU 100/150) [2, 1]; the second box on A
    # (IoU 100/120) finds A taken and B, C out of reach: a false positive [0, 1]; both
    # boxes on the difficult C are ignored, whatever their class; the far box [0, 2].
    # Image 2: the box on A scores 0.05 < 0.1 and is dropped, so A is missed [1, 0] and so
    # is the can [2, 0]; the shifted box has IoU 50/150 with A: a false positive [0, 3].
    # Image 3: the bottle A and the can below it overlap (IoU 80/120). The 0.9 box has IoU
    # 95/105 with A and 85/115 with the can: it takes A whatever its label, [1, 2]; the 0.8
    # box on A finds A taken and takes the can at IoU 80/120: [2, 1].
    expected = [
        [0, 1, 1, 1],  # background: false positives by detected class
        [1, 1, 1, 0],  # bottle: one missed, one right, one taken for a can
        [1, 2, 0, 0],  # can: one missed, two taken for bottles
        [0, 0, 0, 0],  # box: its only object is difficult
    ]
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype == np.int64


def test_score_at_the_threshold_is_kept_and_higher_score_matches_first():
    truth = [gt([A], [1])]
    # Both boxes reach A; the 0.5 one (exactly the threshold) ranks first and takes it.
    preds = [pred([[0, 0, 10, 11], A], [0.4, 0.5], [2, 1])]
    matrix = confusion_matrix(truth, preds, CLASSES, score_threshold=0.5)
    np.testing.assert_array_equal(matrix[:2, :3], [[0, 0, 0], [0, 1, 0]])
    matrix = confusion_matrix(truth, preds, CLASSES, score_threshold=0.0)
    np.testing.assert_array_equal(matrix[:2, :3], [[0, 0, 1], [0, 1, 0]])


def test_empty_images_and_bad_arguments():
    truth = [gt([], []), gt([B], [3])]
    preds = [pred([A], [0.9], [2]), pred([], [], [])]
    matrix = confusion_matrix(truth, preds, CLASSES, score_threshold=0.1)
    assert matrix[0, 2] == 1 and matrix[3, 0] == 1 and matrix.sum() == 2
    with pytest.raises(ValueError, match="one prediction dict per"):
        confusion_matrix(truth, preds[:1], CLASSES, score_threshold=0.1)
    with pytest.raises(ValueError, match="score_threshold"):
        confusion_matrix(truth, preds, CLASSES, score_threshold=1.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        confusion_matrix(truth, preds, CLASSES, score_threshold=0.1, iou_threshold=0.0)


def test_csv_and_png_files(tmp_path):
    matrix = np.array([[0, 2, 0, 1], [1, 5, 0, 0], [0, 1, 3, 0], [0, 0, 0, 4]])
    assert confusion_csv(matrix, CLASSES).splitlines() == [
        "true \\ detected,background,bottle,can,box",
        "background,0,2,0,1",
        "bottle,1,5,0,0",
        "can,0,1,3,0",
        "box,0,0,0,4",
    ]
    paths = write_confusion(tmp_path, matrix, CLASSES, score_threshold=0.01)
    assert paths["confusion_csv"].read_text() == confusion_csv(matrix, CLASSES)
    assert paths["confusion_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="expected \\[4, 4\\]"):
        write_confusion(tmp_path, matrix[:3, :3], CLASSES, score_threshold=0.01)
