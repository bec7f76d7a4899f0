"""Pascal VOC detection AP at one IoU threshold: VOC07 11-point AP and VOC2010+ area AP.

Inputs, one entry per image, ground truth and predictions in the same order: ground truth
``{"boxes": float [N, 4], "labels": int [N], "difficult": bool [N]}`` (``difficult`` may be
left out) and predictions ``{"boxes": float [M, 4], "scores": float [M], "labels": int [M]}``.
Boxes are ``x1, y1, x2, y2`` in 0-based continuous pixels (``annotations.schema``); labels
index ``class_names``, whose entry 0 is the background and never a box's label. NumPy
arrays, lists and tensors (anything with ``.detach()``; torch is not imported) are accepted.

Matching follows the official devkit (``VOCevaldet.m``):

1. a class's detections are ranked by score, highest first, across all images (a stable
   sort: ties keep image order, then the order within the image);
2. a detection's overlap is its highest IoU with any box of its class in its image,
   matched or not, difficult or not;
3. below the threshold it is a false positive; on a difficult box it is ignored (neither
   true nor false positive, however many land there); on a free box it is a true positive
   and takes the box; on a taken box it is a false positive (a duplicate), even when
   another free box overlaps it enough, where COCO would move on to that box;
4. ``npos``, the recall's denominator, counts the non-difficult boxes.

IoU (``annotations.boxes.box_iou``) uses continuous areas ``(x2 - x1) * (y2 - y1)``, as
pycocotools does, not the devkit's ``+ 1`` on integer pixel indices, since our boxes are
continuous: values differ slightly from the MATLAB devkit's, most for small boxes. A class
without non-difficult ground truth has AP NaN and is left out of the mean AP; one with
ground truth but no detections, AP 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prodet.annotations.boxes import box_iou

VOC_IOU_THRESHOLD = 0.5
# Exactly 0.0, 0.1, ..., 1.0; the devkit's np.arange(0, 1.1, 0.1) gives 0.30000000000000004,
# which a recall of exactly 3/10 would miss.
_ELEVEN_RECALLS = np.arange(11) / 10.0


@dataclass(frozen=True)
class GroundTruth:
    """Checked ground truth: float64 boxes [N, 4], int64 labels [N], bool difficult [N]."""

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@dataclass(frozen=True)
class Predictions:
    """Checked predictions: float64 boxes [M, 4], float64 scores [M], int64 labels [M]."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ClassAP:
    """The VOC result of one class (``label >= 1``).

    ``ap_11point`` (VOC07) and ``ap_area`` (VOC2010+) are NaN when ``npos`` (non-difficult
    boxes) is 0. ``num_detections`` counts all the class's detections; those ignored on
    difficult boxes are in neither ``num_tp`` nor ``num_fp``. ``precision``, ``recall`` and
    ``scores`` are float64 ``[num_tp + num_fp]`` along the ranked, non-ignored detections,
    highest score first; ``recall`` is NaN when ``npos == 0``.
    """

    label: int
    name: str
    ap_11point: float
    ap_area: float
    npos: int
    num_detections: int
    num_tp: int
    num_fp: int
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class VocResult:
    """VOC AP of every foreground class (``classes[i].label == i + 1``) at one IoU."""

    iou_threshold: float
    classes: tuple[ClassAP, ...]

    @property
    def map_11point(self) -> float:
        """Mean VOC07 AP over the classes with ground truth (NaN if none has any)."""
        return _nanmean([c.ap_11point for c in self.classes])

    @property
    def map_area(self) -> float:
        """Mean area AP over the classes with ground truth (NaN if none has any)."""
        return _nanmean([c.ap_area for c in self.classes])


def precision_envelope(precision: np.ndarray) -> np.ndarray:
    """The monotone envelope of ``[D]`` precisions: at each rank, the best precision at
    this rank or any later one (same or higher recall)."""
    p = np.asarray(precision, dtype=np.float64)
    return np.maximum.accumulate(p[::-1])[::-1] if p.size else p


def average_precision_11point(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC07 AP: mean over t in 0, 0.1, ..., 1 of the best precision at recall >= t (0 if
    no rank reaches t). ``recall`` and ``precision`` are ``[D]``, ranked by score."""
    r, p = _check_curve(recall, precision)
    return float(np.mean([p[r >= t].max() if (r >= t).any() else 0.0 for t in _ELEVEN_RECALLS]))


def average_precision_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP: area under the precision envelope, with precision 0 beyond the last
    recall. ``recall`` and ``precision`` are ``[D]``, ranked by score."""
    r, p = _check_curve(recall, precision)
    recall_steps = np.diff(np.concatenate([[0.0], r]))
    return float(np.sum(recall_steps * precision_envelope(p)))


def check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    """Return the names as a tuple; index 0 is the background."""
    names = tuple(class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct, background first, got {names!r}")
    return names


def validate_ground_truth(
    ground_truth: Sequence[Mapping[str, Any]], num_classes: int
) -> list[GroundTruth]:
    """Check and convert per-image ground-truth dicts; ``num_classes`` counts the background."""
    out = []
    for i, entry in enumerate(ground_truth):
        where = f"ground_truth[{i}]"
        if not isinstance(entry, Mapping) or "boxes" not in entry or "labels" not in entry:
            raise ValueError(f"{where} must be a dict with keys boxes, labels[, difficult]")
        boxes = _boxes(entry["boxes"], where)
        labels = _labels(entry["labels"], len(boxes), num_classes, where)
        difficult = _to_numpy(entry.get("difficult", np.zeros(len(boxes), dtype=bool)))
        if difficult.shape != (len(boxes),):
            raise ValueError(f"{where}['difficult'] must have shape [{len(boxes)}]")
        out.append(GroundTruth(boxes, labels, difficult.astype(bool)))
    return out


def validate_predictions(
    predictions: Sequence[Mapping[str, Any]], num_classes: int
) -> list[Predictions]:
    """Check and convert per-image prediction dicts; ``num_classes`` counts the background."""
    out = []
    for i, entry in enumerate(predictions):
        where = f"predictions[{i}]"
        if not isinstance(entry, Mapping) or {"boxes", "scores", "labels"} - set(entry):
            raise ValueError(f"{where} must be a dict with keys boxes, scores, labels")
        boxes = _boxes(entry["boxes"], where)
        scores = _to_numpy(entry["scores"]).astype(np.float64).reshape(-1)
        if scores.shape != (len(boxes),) or not np.isfinite(scores).all():
            raise ValueError(f"{where}['scores'] must be {len(boxes)} finite numbers")
        labels = _labels(entry["labels"], len(boxes), num_classes, where)
        out.append(Predictions(boxes, scores, labels))
    return out


def evaluate_voc(
    ground_truth: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    iou_threshold: float = VOC_IOU_THRESHOLD,
) -> VocResult:
    """VOC AP of every class; ``predictions[i]`` belongs to ``ground_truth[i]``.

    Raises:
        ValueError: on mismatched lengths, malformed arrays, labels outside 1..K-1 or a
            threshold outside (0, 1].
    """
    names = check_class_names(class_names)
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    gts = validate_ground_truth(ground_truth, len(names))
    preds = validate_predictions(predictions, len(names))
    if len(gts) != len(preds) or not gts:
        raise ValueError(
            f"need one prediction dict per ground-truth image (an empty one where nothing was "
            f"detected), in the same order; got {len(gts)} images and {len(preds)} predictions"
        )
    gt_labels = np.concatenate([g.labels for g in gts])
    gt_difficult = np.concatenate([g.difficult for g in gts])
    gt_offsets = np.cumsum([0] + [len(g.labels) for g in gts])
    starts = gt_offsets[:-1].tolist()  # where each image's boxes begin in the concatenation
    matches = [_best_overlap(p, g, o) for p, g, o in zip(preds, gts, starts, strict=True)]
    det_overlap = np.concatenate([overlap for overlap, _ in matches])
    det_gt = np.concatenate([index for _, index in matches])
    det_labels = np.concatenate([p.labels for p in preds])
    det_scores = np.concatenate([p.scores for p in preds])
    ranked = np.argsort(-det_scores, kind="stable")

    classes = []
    for label in range(1, len(names)):
        order = ranked[det_labels[ranked] == label]
        npos = int(np.count_nonzero((gt_labels == label) & ~gt_difficult))
        tp, fp, ignored = _assign(det_overlap[order], det_gt[order], gt_difficult, iou_threshold)
        tp_sum, fp_sum = np.cumsum(tp[~ignored]), np.cumsum(fp[~ignored])
        precision = tp_sum / np.maximum(tp_sum + fp_sum, 1)
        recall = tp_sum / npos if npos else np.full(len(tp_sum), math.nan)
        classes.append(
            ClassAP(
                label=label,
                name=names[label],
                ap_11point=average_precision_11point(recall, precision) if npos else math.nan,
                ap_area=average_precision_area(recall, precision) if npos else math.nan,
                npos=npos,
                num_detections=len(order),
                num_tp=int(tp.sum()),
                num_fp=int(fp.sum()),
                precision=precision,
                recall=recall,
                scores=det_scores[order][~ignored],
            )
        )
    return VocResult(iou_threshold=iou_threshold, classes=tuple(classes))


def _best_overlap(pred: Predictions, gt: GroundTruth, offset: int) -> tuple[np.ndarray, ...]:
    """Each detection's highest IoU with a same-class box of its image ``[M]`` (-1 when the
    image has none) and that box's index in the concatenated ground truth ``[M]``."""
    if not gt.labels.size:
        return np.full(len(pred.labels), -1.0), np.full(len(pred.labels), -1)
    iou = box_iou(pred.boxes, gt.boxes)
    iou[pred.labels[:, None] != gt.labels[None, :]] = -1.0
    nearest = iou.argmax(axis=1)  # first of equal maxima, like the devkit's strict ">"
    return iou[np.arange(len(nearest)), nearest], nearest + offset


def _assign(
    overlap: np.ndarray, gt_index: np.ndarray, gt_difficult: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Devkit assignment of ranked detections ``[D]``: bool masks tp, fp, ignored ``[D]``."""
    hit = overlap >= iou_threshold
    ignored = np.zeros_like(hit)
    ignored[hit] = gt_difficult[gt_index[hit]]
    counted = np.flatnonzero(hit & ~ignored)
    # The first ranked detection on a box takes it; later ones on that box are duplicates.
    _, first = np.unique(gt_index[counted], return_index=True)
    tp = np.zeros_like(hit)
    tp[counted[first]] = True
    return tp, ~hit | (hit & ~ignored & ~tp), ignored


def _check_curve(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(recall, dtype=np.float64).reshape(-1)
    p = np.asarray(precision, dtype=np.float64).reshape(-1)
    if r.shape != p.shape:
        raise ValueError(f"recall {list(r.shape)} and precision {list(p.shape)} differ in shape")
    return r, p


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _boxes(value: Any, where: str) -> np.ndarray:
    boxes = _to_numpy(value).astype(np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}['boxes'] must have shape [N, 4], got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{where}['boxes'] holds NaN or infinite coordinates")
    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if inverted.size:
        raise ValueError(
            f"{where}['boxes'][{inverted[0]}] = {boxes[inverted[0]].tolist()} has x2 < x1 or "
            "y2 < y1; boxes are x1, y1, x2, y2 (convert x, y, w, h first)"
        )
    return boxes


def _labels(value: Any, count: int, num_classes: int, where: str) -> np.ndarray:
    labels = _to_numpy(value).reshape(-1)
    if labels.shape != (count,) or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(f"{where}['labels'] must be {count} integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    outside = np.flatnonzero((labels < 1) | (labels >= num_classes))
    if outside.size:
        raise ValueError(
            f"{where}['labels'][{outside[0]}] = {labels[outside[0]]} is outside 1..{num_classes - 1}"
            f" (0 is the background, class_names has {num_classes} entries)"
        )
    return labels
