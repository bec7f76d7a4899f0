"""A detection confusion matrix: classes plus background, at one IoU and one score threshold.

``matrix[t, p]`` counts objects of true class ``t`` detected as class ``p``; index 0 is the
background, so row 0 holds detections that match no object (false positives, by predicted
class) and column 0 objects no detection matched (misses, by true class); ``matrix[0, 0]``
is always 0. Rows sum to the objects of a class (plus, in row 0, the unmatched
detections); the diagonal from ``[1, 1]`` on is the correctly classified, localised ones.

Matching, image by image (boxes ``x1, y1, x2, y2`` in the same pixels on both sides):

1. detections with ``score >= score_threshold`` are kept (evaluation passes the model's own
   configured ``score_thresh``), then ranked by score, highest first (a stable sort);
2. each takes the unmatched non-difficult object of **any** class with which it has the
   highest IoU, if that IoU is ``>= iou_threshold`` (0.5); ties go to the first object;
   the pair is counted at ``[object class, detected class]``, so a well-placed box with the
   wrong label is a confusion between the two classes, not a miss plus a false positive;
3. otherwise, a detection with IoU ``>= iou_threshold`` with a difficult object is
   ignored, as VOC and COCOeval ignore detections on difficult boxes (any number of
   them); any other detection is a false positive ``[0, detected class]``;
4. non-difficult objects left unmatched are misses ``[object class, 0]``; difficult ones
   are never counted.

``write_confusion`` writes the matrix as ``confusion.csv`` and ``confusion.png`` (matplotlib
object API on the Agg canvas, no pyplot).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prodet.annotations.atomic import atomic_write_bytes
from prodet.annotations.boxes import box_iou
from prodet.detection.metrics_voc import (
    check_class_names,
    validate_ground_truth,
    validate_predictions,
)

CONFUSION_IOU = 0.5
BACKGROUND = "background"


def confusion_matrix(
    ground_truth: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    score_threshold: float,
    iou_threshold: float = CONFUSION_IOU,
) -> np.ndarray:
    """The int64 ``[K, K]`` matrix (true class by row, detected class by column, 0 the
    background) of ``predictions[i]`` against ``ground_truth[i]``; see the module doc.

    Inputs are those of ``detection.metrics_voc.evaluate_voc``; ``class_names`` has ``K``
    entries, the background first.

    Raises:
        ValueError: mismatched lengths, malformed inputs, or a threshold outside its range
            (``score_threshold`` in [0, 1], ``iou_threshold`` in (0, 1]).
    """
    names = check_class_names(class_names)
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    gts = validate_ground_truth(ground_truth, len(names))
    preds = validate_predictions(predictions, len(names))
    if len(gts) != len(preds):
        raise ValueError(
            f"need one prediction dict per ground-truth image (an empty one where nothing was "
            f"detected), in the same order; got {len(gts)} images and {len(preds)} predictions"
        )
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    for gt, pred in zip(gts, preds, strict=True):
        kept = np.flatnonzero(pred.scores >= score_threshold)
        ranked = kept[np.argsort(-pred.scores[kept], kind="stable")]
        iou = box_iou(pred.boxes, gt.boxes)
        free = ~gt.difficult
        for d in ranked:
            label = pred.labels[d]
            options = np.where(free, iou[d], -1.0)
            best = int(np.argmax(options)) if options.size else -1
            if best >= 0 and options[best] >= iou_threshold:
                free[best] = False
                matrix[gt.labels[best], label] += 1
            elif not (gt.difficult & (iou[d] >= iou_threshold)).any():
                matrix[0, label] += 1
        np.add.at(matrix, (gt.labels[free], 0), 1)  # objects no detection took
    return matrix


def confusion_csv(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """The matrix as CSV: a header ``true \\ detected, background, <classes>``, then one row
    per true class, ``background`` first."""
    labels = [BACKGROUND, *class_names[1:]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ detected", *labels])
    for name, row in zip(labels, matrix.tolist(), strict=True):
        writer.writerow([name, *row])
    return buffer.getvalue()


def plot_confusion(
    matrix: np.ndarray, class_names: Sequence[str], *, score_threshold: float, iou_threshold: float
) -> bytes:
    """PNG bytes of the matrix as a heat map with the counts written in the cells."""
    labels = [BACKGROUND, *class_names[1:]]
    side = 1.6 + 0.55 * len(labels)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="detected", ylabel="true")
    ax.set_title(f"Confusion at IoU {iou_threshold:g}, score >= {score_threshold:g}", fontsize=10)
    bright = matrix.max() / 2 if matrix.size else 0
    for (t, p), count in np.ndenumerate(matrix):
        colour = "white" if count > bright else "black"
        ax.text(p, t, str(count), ha="center", va="center", fontsize=8, color=colour)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_confusion(
    out_dir: str | os.PathLike[str],
    matrix: np.ndarray,
    class_names: Sequence[str],
    *,
    score_threshold: float,
    iou_threshold: float = CONFUSION_IOU,
) -> dict[str, Path]:
    """Write ``confusion.csv`` and ``confusion.png`` into ``out_dir``, each atomically.

    Raises:
        ValueError: the matrix is not ``[K, K]`` for the ``K`` class names.
    """
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"matrix is {list(matrix.shape)}, expected [{len(class_names)}, "
            f"{len(class_names)}] for classes {tuple(class_names)}"
        )
    out = Path(out_dir)
    paths = {"confusion_csv": out / "confusion.csv", "confusion_png": out / "confusion.png"}
    atomic_write_bytes(paths["confusion_csv"], confusion_csv(matrix, class_names).encode())
    png = plot_confusion(
        matrix, class_names, score_threshold=score_threshold, iou_threshold=iou_threshold
    )
    atomic_write_bytes(paths["confusion_png"], png)
    return paths
