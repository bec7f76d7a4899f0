"""Evaluate a detector on one split: predictions, VOC and COCO metrics, result files.

Ground truth is taken from the dataset records in original-image pixels; predictions
are mapped back from model-input pixels (``datasets.geometry.boxes_to_original``), so
the metrics measure what a user of the original images sees. Images carry the ids of the
dataset's own COCO export (``annotations.coco.coco_image_ids``: 1-based positions in the
whole dataset, not in the split), so ``predictions_coco.json`` joins the file
``prodet convert --coco`` writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prodet.annotations.coco import coco_image_ids
from prodet.annotations.schema import ImageRecord
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.loader import build_loader
from prodet.detection.confusion import CONFUSION_IOU, confusion_matrix, write_confusion
from prodet.detection.engine import ProposalFn, predict
from prodet.detection.metrics_coco import CocoResult, coco_results, evaluate_coco
from prodet.detection.metrics_voc import VocResult, evaluate_voc
from prodet.detection.pr_plots import write_evaluation


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one pass.

    ``ground_truth[i]`` and ``predictions[i]`` belong to image ``i`` of the split, in
    original-image pixels; ``coco_image_ids[i]`` is its id in the dataset's COCO export.
    """

    voc: VocResult
    coco: CocoResult
    ground_truth: list[dict[str, np.ndarray]]
    predictions: list[dict[str, np.ndarray]]
    coco_image_ids: list[int]
    ms_per_image: float

    def row(self, prefix: str) -> dict[str, float]:
        """The headline numbers, e.g. ``{"val_map_area": ..., "val_map_11": ...}``."""
        return {
            f"{prefix}_map_area": float(self.voc.map_area),
            f"{prefix}_map_11": float(self.voc.map_11point),
            f"{prefix}_coco_ap": float(self.coco.stats["AP"]),
            f"{prefix}_ms_per_image": self.ms_per_image,
        }


def ground_truth_of(records: list[ImageRecord]) -> list[dict[str, np.ndarray]]:
    """Per-image ``{"boxes", "labels", "difficult"}`` in original pixels."""
    return [{"boxes": r.boxes, "labels": r.labels, "difficult": r.difficult} for r in records]


def evaluate_predictions(
    dataset: DetectionDataset,
    predictions: list[dict[str, Any]],
    ms_per_image: float = float("nan"),
) -> Evaluation:
    """VOC and COCO metrics of ``predictions[i]`` against ``dataset.records[i]``.

    Raises:
        ValueError: malformed predictions or not one per record (see ``detection.metrics_voc``).
    """
    gt = ground_truth_of(dataset.records)
    ids = coco_image_ids(dataset.voc, [r.image_id for r in dataset.records])
    return Evaluation(
        voc=evaluate_voc(gt, predictions, dataset.classes),
        coco=evaluate_coco(gt, predictions, dataset.classes, image_ids=ids),
        ground_truth=gt,
        predictions=predictions,
        coco_image_ids=ids,
        ms_per_image=ms_per_image,
    )


def evaluate_model(
    model: nn.Module,
    dataset: DetectionDataset,
    *,
    device: torch.device,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    proposals: ProposalFn | None = None,
) -> Evaluation:
    """Predict over ``dataset`` (built with the ``eval`` preset) and score it.

    ``proposals``: precomputed proposals per batch, for a Fast R-CNN built without RPN.
    """
    loader = build_loader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, seed=0
    )
    predictions, ms = predict(model, loader, device=device, progress=progress, proposals=proposals)
    return evaluate_predictions(dataset, predictions, ms)


def write_evaluation_files(
    out_dir: str | os.PathLike[str],
    evaluation: Evaluation,
    classes: tuple[str, ...],
    *,
    score_threshold: float,
) -> dict[str, Path]:
    """Write the evaluation's files into ``out_dir``; return them by kind.

    summary.json, per_class.md, pr_curves.png and predictions_coco.json (image ids of the
    dataset's COCO export) as ``detection.pr_plots.write_evaluation`` writes them, and
    confusion.csv and confusion.png (``detection.confusion``) at IoU 0.5 and
    ``score_threshold``, the model's own configured score threshold.
    """
    results = coco_results(evaluation.predictions, classes, image_ids=evaluation.coco_image_ids)
    paths = write_evaluation(out_dir, evaluation.voc, evaluation.coco, classes, results)
    matrix = confusion_matrix(
        evaluation.ground_truth,
        evaluation.predictions,
        classes,
        score_threshold=score_threshold,
        iou_threshold=CONFUSION_IOU,
    )
    paths.update(write_confusion(out_dir, matrix, classes, score_threshold=score_threshold))
    return paths
