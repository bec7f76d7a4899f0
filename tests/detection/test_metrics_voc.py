"""VOC AP on hand-computed cases: every expected number is derived in a comment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prodet.detection.metrics_voc import (
    average_precision_11point,
    average_precision_area,
    evaluate_voc,
)

CLASSES = ("__background__", "bottle", "can")
A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
C = [40.0, 40.0, 60.0, 60.0]


def gt(boxes, labels, difficult=None):
    entry = {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
    }
    if difficult is not None:
        entry["difficult"] = np.asarray(difficult, dtype=bool)
    return entry


def pred(boxes, scores, labels):
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
    }


def empty_pred():
    return pred([], [], [])


def test_perfect_predictions_score_one():
    truth = [gt([A, B], [1, 2]), gt([C], [1])]
    result = evaluate_voc(truth, [pred([A, B], [0.9, 0.8], [1, 2]), pred([C], [0.7], [1])], CLASSES)
    assert [c.ap_area for c in result.classes] == [1.0, 1.0]
    assert [c.ap_11point for c in result.classes] == [1.0, 1.0]
    assert [(c.npos, c.num_tp, c.num_fp) for c in result.classes] == [(2, 2, 0), (1, 1, 0)]
    assert result.map_area == result.map_11point == 1.0


def test_no_predictions_score_zero():
    result = evaluate_voc([gt([A, B], [1, 2])], [empty_pred()], CLASSES)
    assert [c.ap_area for c in result.classes] == [0.0, 0.0]
    assert [c.ap_11point for c in result.classes] == [0.0, 0.0]
    assert result.classes[0].num_detections == 0
    assert result.classes[0].precision.shape == (0,)
    assert result.map_area == 0.0


def test_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    # "can" has no ground truth, only a false positive: its AP is undefined (NaN), and the
    # mean over classes is bottle's AP alone.
    result = evaluate_voc([gt([A], [1])], [pred([A, B], [0.9, 0.8], [1, 2])], CLASSES)
    bottle, can = result.classes
    assert bottle.ap_area == 1.0
    assert math.isnan(can.ap_area) and math.isnan(can.ap_11point)
    assert (can.npos, can.num_fp) == (0, 1)
    assert np.isnan(can.recall).all()
    assert result.map_area == 1.0 and result.map_11point == 1.0


def test_no_ground_truth_at_all_gives_nan_means():
    result = evaluate_voc([gt([], [])], [pred([A], [0.5], [1])], CLASSES)
    assert math.isnan(result.map_area) and math.isnan(result.map_11point)


def test_duplicate_is_a_false_positive_and_both_aps_follow_by_hand():
    # Two bottles, A in image 0 and B in image 1. Ranked detections:
    #   0.9 on A -> TP: precision 1/1, recall 1/2
    #   0.8 on A -> FP (duplicate of a taken box): precision 1/2, recall 1/2
    #   0.7 on B -> TP: precision 2/3, recall 2/2
    # Envelope: 1 up to recall 1/2, 2/3 up to recall 1.
    # Area AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # 11-point: t = 0..0.5 (6 points) -> 1, t = 0.6..1.0 (5 points) -> 2/3:
    #   (6 + 5 * 2/3) / 11 = 28/33.
    truth = [gt([A], [1]), gt([B], [1])]
    result = evaluate_voc(truth, [pred([A, A], [0.9, 0.8], [1, 1]), pred([B], [0.7], [1])], CLASSES)
    bottle = result.classes[0]
    assert (bottle.num_detections, bottle.num_tp, bottle.num_fp) == (3, 2, 1)
    np.testing.assert_allclose(bottle.precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(bottle.recall, [0.5, 0.5, 1.0])
    assert bottle.ap_area == pytest.approx(5 / 6, abs=1e-12)
    assert bottle.ap_11point == pytest.approx(28 / 33, abs=1e-12)


def test_eleven_point_and_area_differ_with_a_missed_object():
    # Three bottles (A, B, C), one never found. Ranked detections:
    #   0.9 false positive (label 1 on empty space) -> precision 0,   recall 0
    #   0.8 on A -> TP                               -> precision 1/2, recall 1/3
    #   0.7 on B -> TP                               -> precision 2/3, recall 2/3
    # Envelope is 2/3 everywhere up to recall 2/3.
    # Area AP = 1/3 * 2/3 + 1/3 * 2/3 = 4/9.
    # 11-point: t = 0..0.6 (7 points) reach precision 2/3, t = 0.7..1.0 get 0:
    #   7 * 2/3 / 11 = 14/33.
    truth = [gt([A, B, C], [1, 1, 1])]
    far = [100.0, 100.0, 110.0, 110.0]
    result = evaluate_voc(truth, [pred([far, A, B], [0.9, 0.8, 0.7], [1, 1, 1])], CLASSES)
    bottle = result.classes[0]
    assert bottle.ap_area == pytest.approx(4 / 9, abs=1e-12)
    assert bottle.ap_11point == pytest.approx(14 / 33, abs=1e-12)


def test_detections_on_difficult_objects_are_ignored():
    # C is difficult: the two detections on it (ranked first) are neither TP nor FP, so
    # the ranking is just "0.5 on A -> TP" and AP is 1 with npos 1.
    truth = [gt([A, C], [1, 1], difficult=[False, True])]
    preds = [pred([C, C, A], [0.95, 0.9, 0.5], [1, 1, 1])]
    bottle = evaluate_voc(truth, preds, CLASSES).classes[0]
    assert (bottle.npos, bottle.num_detections, bottle.num_tp, bottle.num_fp) == (1, 3, 1, 0)
    assert bottle.ap_area == bottle.ap_11point == 1.0
    # Without the flag, C counts: TP, duplicate FP, TP -> the 5/6 ranking above.
    plain = evaluate_voc([gt([A, C], [1, 1])], preds, CLASSES).classes[0]
    assert plain.ap_area == pytest.approx(5 / 6, abs=1e-12)


def test_duplicate_on_a_taken_box_stays_false_even_if_another_box_overlaps():
    # A and D overlap (IoU 2/3). The second detection's best box is A (IoU 95/105), already
    # taken, so the devkit calls it a duplicate although D overlaps it by 85/115 >= 0.5.
    # Ranking: TP (precision 1, recall 1/2), FP -> area AP = 1/2 * 1 = 1/2.
    d = [0.0, 2.0, 10.0, 12.0]
    second = [0.0, 0.5, 10.0, 10.5]
    truth = [gt([A, d], [1, 1])]
    bottle = evaluate_voc(truth, [pred([A, second], [0.9, 0.8], [1, 1])], CLASSES).classes[0]
    assert (bottle.num_tp, bottle.num_fp) == (1, 1)
    assert bottle.ap_area == pytest.approx(0.5, abs=1e-12)


def test_iou_exactly_at_threshold_is_a_match_and_wrong_class_is_not():
    half = [0.0, 0.0, 10.0, 5.0]  # IoU with A = 50 / 100
    result = evaluate_voc([gt([A], [1])], [pred([half, A], [0.9, 0.8], [1, 2])], CLASSES)
    bottle, can = result.classes
    assert (bottle.num_tp, bottle.num_fp) == (1, 0)
    assert (can.num_tp, can.num_fp) == (0, 1)


def test_ap_helpers_on_empty_curves_are_zero():
    assert average_precision_area(np.array([]), np.array([])) == 0.0
    assert average_precision_11point(np.array([]), np.array([])) == 0.0


def test_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    truth = [{"boxes": torch.tensor([A]), "labels": torch.tensor([1])}]
    preds = [
        {
            "boxes": torch.tensor([A], requires_grad=True),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
        }
    ]
    assert evaluate_voc(truth, preds, CLASSES).classes[0].ap_area == 1.0


@pytest.mark.parametrize(
    ("truth", "preds", "message"),
    [
        ([gt([A], [1])], [], "one prediction dict per ground-truth image"),
        ([gt([A], [0])], [empty_pred()], "outside 1..2"),
        ([gt([A], [1])], [pred([[5.0, 5.0, 2.0, 2.0]], [0.5], [1])], "x2 < x1"),
        ([gt([A], [1])], [pred([A], [0.5, 0.4], [1])], "scores"),
        ([gt([A], [1], difficult=[True, False])], [empty_pred()], "difficult"),
        ([{"boxes": [A]}], [empty_pred()], "keys boxes, labels"),
        ([gt([A], [1])], [pred([A], [0.5], [3])], "outside 1..2"),
    ],
)
def test_malformed_inputs_raise_value_error(truth, preds, message):
    with pytest.raises(ValueError, match=message):
        evaluate_voc(truth, preds, CLASSES)


def test_bad_class_names_and_threshold_raise():
    with pytest.raises(ValueError, match="class_names"):
        evaluate_voc([gt([A], [1])], [empty_pred()], ["__background__"])
    with pytest.raises(ValueError, match="iou_threshold"):
        evaluate_voc([gt([A], [1])], [empty_pred()], CLASSES, iou_threshold=0.0)
