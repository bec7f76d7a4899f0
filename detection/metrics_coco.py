"""COCO box AP through pycocotools, on the same inputs as ``detection.metrics_voc``.

Ground truth and predictions are per-image dicts (see ``detection.metrics_voc``) with
boxes ``x1, y1, x2, y2`` in 0-based continuous pixels. In COCO form a box becomes
``bbox = [x1, y1, x2 - x1, y2 - y1]``, a label becomes its ``category_id`` (1..K-1, no
background) and image ``i`` gets ``image_ids[i]``, by default ``i + 1``; pass
``annotations.coco.coco_image_ids`` (1-based positions in ``dataset.records``) to line
results up with the dataset's COCO export. The ground truth is built by that export's own
builder, ``annotations.coco.coco_ground_truth``, so scoring ``coco_results`` against the
file ``prodet convert --coco`` writes gives the numbers reported here.

Difficult objects are ignored through ``iscrowd = 1``. pycocotools (checked on 2.0.11)
overwrites any ``ignore`` field with ``iscrowd`` in ``COCOeval._prepare``, so ``iscrowd``
is the only ignore flag it honours. Detections on a crowd box are neither true nor false
positives, however many there are, as in VOC. Two crowd rules differ from VOC: the
overlap with a crowd box is the intersection over the detection's own area, so a small
detection inside a difficult box is ignored where VOC counts a false positive; and a
detection goes to a regular box before a crowd one.

COCOeval keeps the 100 best detections per image (``maxDets``); VOC keeps all of them.
Where pycocotools reports -1 (no ground truth for a class or an area range), this module
reports NaN. COCOeval prints to stdout; the prints are captured and logged at DEBUG level
(``contextlib.redirect_stdout`` swaps ``sys.stdout`` for the whole process while it runs).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from prodet.annotations.coco import coco_ground_truth
from prodet.detection.metrics_voc import (
    check_class_names,
    validate_ground_truth,
    validate_predictions,
)

logger = logging.getLogger(__name__)

COCO_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


@dataclass(frozen=True)
class CocoResult:
    """COCOeval's box metrics.

    Attributes:
        stats: the 12 summary numbers by ``COCO_STAT_NAMES`` (AP is the mean over IoU
            0.50:0.05:0.95, APs/m/l by area, AR1/10/100 by detections per image).
        per_class_ap: class name to AP@[.5:.95], all areas, 100 detections per image.
        per_class_ap50: class name to AP at IoU 0.5.
    """

    stats: dict[str, float]
    per_class_ap: dict[str, float]
    per_class_ap50: dict[str, float]


def coco_results(
    predictions: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    image_ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Predictions in COCO results format: ``[{image_id, category_id, bbox, score}]``,
    ``bbox = [x1, y1, w, h]``, image by image in input order."""
    preds = validate_predictions(predictions, len(check_class_names(class_names)))
    results = []
    for image_id, pred in zip(_image_ids(image_ids, len(preds)), preds, strict=True):
        for (x1, y1, x2, y2), score, label in zip(
            pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist(), strict=True
        ):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return results


def evaluate_coco(
    ground_truth: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    image_ids: Sequence[int] | None = None,
) -> CocoResult:
    """Run COCOeval (bbox) on the ground truth and ``predictions[i]`` for image ``i``.

    Raises:
        ValueError: on mismatched lengths or malformed inputs (see ``detection.metrics_voc``).
    """
    names = check_class_names(class_names)
    if len(ground_truth) != len(predictions) or not ground_truth:
        raise ValueError(
            f"need one prediction dict per ground-truth image (an empty one where nothing was "
            f"detected), in the same order; got {len(ground_truth)} and {len(predictions)}"
        )
    ids = _image_ids(image_ids, len(ground_truth))
    gts = validate_ground_truth(ground_truth, len(names))
    dataset = coco_ground_truth(
        [{"boxes": g.boxes, "labels": g.labels, "difficult": g.difficult} for g in gts],
        names,
        images=[{"id": image_id} for image_id in ids],
    )
    results = coco_results(predictions, names, image_ids=ids)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        evaluator = _run_cocoeval(dataset, results)
    logger.debug("pycocotools output:\n%s", captured.getvalue())

    stats = {
        name: _nan_if_missing(v) for name, v in zip(COCO_STAT_NAMES, evaluator.stats, strict=True)
    }
    params = evaluator.params
    # precision: [IoU thresholds, recall thresholds, classes, area ranges, max detections]
    precision = evaluator.eval["precision"][
        :, :, :, params.areaRngLbl.index("all"), params.maxDets.index(max(params.maxDets))
    ]
    iou50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    per_class_ap, per_class_ap50 = {}, {}
    for k, name in enumerate(names[1:]):
        per_class_ap[name] = _mean_valid(precision[:, :, k])
        per_class_ap50[name] = _mean_valid(precision[iou50, :, k])
    logger.info(
        "COCO box AP %.4f, AP50 %.4f over %d images and %d detections",
        stats["AP"],
        stats["AP50"],
        len(dataset["images"]),
        len(results),
    )
    return CocoResult(stats=stats, per_class_ap=per_class_ap, per_class_ap50=per_class_ap50)


def _run_cocoeval(dataset: dict[str, Any], results: list[dict[str, Any]]) -> COCOeval:
    coco_gt = COCO()
    coco_gt.dataset = dataset
    coco_gt.createIndex()
    if results:
        # loadRes adds fields (area, id, iscrowd, segmentation) to the dicts it gets.
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
    else:
        # loadRes reads results[0] and fails on an empty list; an empty index scores 0.
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": dataset["images"],
            "categories": dataset["categories"],
            "annotations": [],
        }
        coco_dt.createIndex()
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    evaluator.params.imgIds = [image["id"] for image in dataset["images"]]
    evaluator.params.catIds = [category["id"] for category in dataset["categories"]]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def _image_ids(image_ids: Sequence[int] | None, count: int) -> list[int]:
    if image_ids is None:
        return list(range(1, count + 1))
    ids = [int(i) for i in image_ids]
    if len(ids) != count or len(set(ids)) != count:
        raise ValueError(f"image_ids must be {count} distinct ids, one per image; got {len(ids)}")
    return ids


def _nan_if_missing(value: float) -> float:
    """pycocotools writes -1 where nothing could be measured (no ground truth)."""
    return math.nan if value < 0 else float(value)


def _mean_valid(precision: np.ndarray) -> float:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else math.nan
