"""COCO metrics through pycocotools, and VOC AP checked against pycocotools' AP50."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from prodet.annotations.coco import coco_ground_truth, coco_image_ids, to_coco
from prodet.annotations.schema import ImageRecord, VocDataset
from prodet.detection.metrics_coco import COCO_STAT_NAMES, coco_results, evaluate_coco
from prodet.detection.metrics_voc import evaluate_voc, precision_envelope
from tests.detection.detections import CLASSES, A, B, C, gt, pred

CELL = 100.0  # synthetic images are 4 x 4 cells; one cell holds at most one object


def synthetic(seed: int, num_images: int = 80):
    """Ground truth in disjoint grid cells, and a noisy detector's output: jittered hits
    (IoU on both sides of 0.5), duplicates, wrong labels and background false positives.

    Disjoint boxes mean no detection can reach IoU 0.5 with two boxes, so the devkit's
    and COCO's matching rules must agree detection by detection.
    """
    rng = np.random.default_rng(seed)
    truth, preds = [], []
    for _ in range(num_images):
        cells = rng.choice(16, size=rng.integers(0, 6), replace=False)
        size = rng.uniform(15.0, 90.0, (len(cells), 2))
        corner = np.stack([cells % 4, cells // 4], 1) * CELL + rng.uniform(
            0, 1, (len(cells), 2)
        ) * (CELL - size)
        boxes = np.concatenate([corner, corner + size], 1)
        labels = rng.integers(1, len(CLASSES), len(cells))
        truth.append(gt(boxes, labels))
        det_boxes, det_scores, det_labels = [], [], []
        for box, label in zip(boxes, labels, strict=True):
            for _ in range(rng.choice([0, 1, 2], p=[0.15, 0.6, 0.25])):
                wh = box[2:] - box[:2]
                shift = rng.normal(0.0, 0.15, 2) * wh
                scale = np.exp(rng.normal(0.0, 0.15, 2))
                center = (box[:2] + box[2:]) / 2 + shift
                det_boxes.append(np.concatenate([center - wh * scale / 2, center + wh * scale / 2]))
                det_scores.append(rng.uniform(0.2, 1.0))
                det_labels.append(label if rng.random() > 0.1 else rng.integers(1, len(CLASSES)))
        for _ in range(rng.poisson(2.0)):
            corner = rng.uniform(0.0, 4 * CELL - 60.0, 2)
            det_boxes.append(np.concatenate([corner, corner + rng.uniform(10.0, 60.0, 2)]))
            det_scores.append(rng.uniform(0.0, 0.8))
            det_labels.append(rng.integers(1, len(CLASSES)))
        preds.append(pred(det_boxes, det_scores, det_labels))
    return truth, preds


def cocoeval_counts_at_50(truth, preds) -> dict[int, tuple[int, int]]:
    """(TP, FP) per category at IoU 0.5, all areas, read from COCOeval's own matching."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = coco_ground_truth(truth, CLASSES)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(coco_results(preds, CLASSES))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
    assert evaluator.params.iouThrs[0] == 0.5
    counts = {label: (0, 0) for label in range(1, len(CLASSES))}
    for entry in evaluator.evalImgs:
        if entry is None or entry["aRng"] != evaluator.params.areaRng[0]:
            continue
        matched = entry["dtMatches"][0] > 0
        counted = ~entry["dtIgnore"][0].astype(bool)
        tp, fp = counts[entry["category_id"]]
        counts[entry["category_id"]] = (
            tp + int((matched & counted).sum()),
            fp + int((~matched & counted).sum()),
        )
    return counts


def interpolated_101(recall: np.ndarray, precision: np.ndarray) -> float:
    """pycocotools' AP: the precision envelope read at recall 0, 0.01, ..., 1 (0 beyond the
    last recall), averaged."""
    thresholds = np.linspace(0.0, 1.0, 101)
    envelope = np.append(precision_envelope(precision), 0.0)
    return float(envelope[np.searchsorted(recall, thresholds, side="left")].mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_voc_matching_and_ap_agree_with_pycocotools(seed):
    truth, preds = synthetic(seed)
    voc = evaluate_voc(truth, preds, CLASSES)
    coco = evaluate_coco(truth, preds, CLASSES)
    counts = cocoeval_counts_at_50(truth, preds)
    for cls in voc.classes:
        assert cls.num_tp > 20 and cls.num_fp > 20  # a real ranking, not a trivial one
        assert (cls.num_tp, cls.num_fp) == counts[cls.label]
        # Same matches; only the interpolation differs: the exact area under the envelope
        # against pycocotools' mean of the envelope at 101 recall points.
        assert cls.ap_area == pytest.approx(coco.per_class_ap50[cls.name], abs=0.01)
        # Sampling our own curve at COCO's 101 points gives its number: same ranking too.
        assert interpolated_101(cls.recall, cls.precision) == pytest.approx(
            coco.per_class_ap50[cls.name], abs=1e-9
        )
    assert voc.map_area == pytest.approx(coco.stats["AP50"], abs=0.01)
    assert coco.stats["AP"] < coco.stats["AP50"]


def test_stats_are_named_and_stdout_stays_quiet(capsys):
    truth, preds = synthetic(2, num_images=10)
    result = evaluate_coco(truth, preds, CLASSES)
    assert tuple(result.stats) == COCO_STAT_NAMES
    assert all(0.0 <= v <= 1.0 for v in result.stats.values() if not math.isnan(v))
    assert capsys.readouterr().out == ""


def test_detections_on_difficult_objects_are_ignored():
    # C is difficult (written as iscrowd = 1): the two high-scored detections on it are
    # neither TP nor FP, so the only ranked detection is the TP on A: AP 1.
    preds = [pred([C, C, A], [0.95, 0.9, 0.5], [1, 1, 1])]
    result = evaluate_coco([gt([A, C], [1, 1], difficult=[False, True])], preds, CLASSES)
    assert result.per_class_ap["bottle"] == pytest.approx(1.0)
    assert result.per_class_ap50["bottle"] == pytest.approx(1.0)
    # Without the flag: TP, duplicate FP, TP -> 101-point AP below 1.
    plain = evaluate_coco([gt([A, C], [1, 1])], preds, CLASSES)
    assert plain.per_class_ap50["bottle"] < 0.9


def test_no_detections_give_zeros_and_classes_without_ground_truth_nan():
    truth = [gt([A, C], [1, 2]), gt([], [])]
    result = evaluate_coco(truth, [pred([], [], [])] * 2, CLASSES)
    assert result.stats["AP"] == result.stats["AP50"] == result.stats["AR100"] == 0.0
    assert result.per_class_ap["bottle"] == result.per_class_ap["can"] == 0.0
    assert math.isnan(result.per_class_ap["box"]) and math.isnan(result.per_class_ap50["box"])
    assert math.isnan(result.stats["APl"])  # no object is larger than 96 x 96


def test_coco_keeps_looking_for_a_free_box_where_the_devkit_does_not():
    # A and D overlap; the second detection's best box is A, taken by the first. The
    # devkit calls it a duplicate (VOC AP 1/2); COCO matches it to D (AP50 1).
    d = [0.0, 2.0, 10.0, 12.0]
    truth = [gt([A, d], [1, 1])]
    preds = [pred([A, [0.0, 0.5, 10.0, 10.5]], [0.9, 0.8], [1, 1])]
    assert evaluate_voc(truth, preds, CLASSES).classes[0].ap_area == pytest.approx(0.5)
    assert evaluate_coco(truth, preds, CLASSES).per_class_ap50["bottle"] == 1.0


def test_results_format_and_image_ids():
    preds = [pred([[1.0, 2.0, 11.0, 22.0]], [0.75], [2]), pred([], [], [])]
    results = coco_results(preds, CLASSES, image_ids=[7, 9])
    assert results == [
        {"image_id": 7, "category_id": 2, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.75}
    ]
    assert json.loads(json.dumps(results)) == results
    with pytest.raises(ValueError, match="image_ids"):
        coco_results(preds, CLASSES, image_ids=[7, 7])


def test_scoring_against_the_annotations_export_gives_the_reported_ap():
    def record(image_id, boxes, labels, difficult):
        return ImageRecord(
            image_id=image_id,
            image_path=f"JPEGImages/{image_id}.jpg",
            width=100,
            height=100,
            image_format="JPEG",
            boxes=np.array(boxes, dtype=np.float32),
            labels=np.array(labels, dtype=np.int64),
            difficult=np.array(difficult, dtype=bool),
            xml_sha256="0" * 64,
        )

    records = (
        record("a", [A, B], [1, 3], [False, True]),
        record("b", [C], [2], [False]),
        record("c", [B], [1], [False]),
    )
    dataset = VocDataset(
        format_version=1, root="/voc", classes=CLASSES, records=records, splits={"test": ("c", "b")}
    )
    export = to_coco(dataset)
    assert [a["iscrowd"] for a in export["annotations"]] == [0, 1, 0, 0]  # B in "a" is difficult
    # The test split, in split order; its COCO ids are its records' positions in the dataset.
    split = dataset.split_records("test")
    ids = coco_image_ids(dataset, [r.image_id for r in split])
    assert ids == [3, 2]
    truth = [{"boxes": r.boxes, "labels": r.labels, "difficult": r.difficult} for r in split]
    # "c": a hit on B and a false positive; "b": a loose hit on C (IoU 0.64) and a miss of A.
    preds = [
        pred([B, A], [0.9, 0.8], [1, 1]),
        pred([[42.0, 42.0, 60.0, 60.0], A], [0.7, 0.6], [2, 3]),
    ]
    reported = evaluate_coco(truth, preds, CLASSES, image_ids=ids).stats["AP"]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = export
        coco_gt.createIndex()
        evaluator = COCOeval(
            coco_gt, coco_gt.loadRes(coco_results(preds, CLASSES, image_ids=ids)), "bbox"
        )
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert 0.0 < reported < 1.0
    assert evaluator.stats[0] == pytest.approx(reported, abs=1e-12)
