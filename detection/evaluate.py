"""Evaluate a detector on one split: predictions, VOC and COCO metrics, result files.

Ground truth is taken from the dataset records in original-image pixels; predictions
are mapped back from model-input pixels (``datasets.letterbox.boxes_to_original``), so
the metrics measure what a user of the original images sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prodet.annotations.schema import ImageRecord
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.loader import build_loader
from prodet.detection.engine import ProposalFn, predict
from prodet.detection.metrics_coco import CocoResult, coco_results, evaluate_coco
from prodet.detection.metrics_voc import VocResult, evaluate_voc
from prodet.detection.pr_plots import write_evaluation
from torch import nn


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one pass; ``predictions`` are in original-image pixels."""

    voc: VocResult
    coco: CocoResult
    predictions: list[dict[str, np.ndarray]]
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
    records: list[ImageRecord],
    predictions: list[dict[str, Any]],
    classes: tuple[str, ...],
    ms_per_image: float = float("nan"),
) -> Evaluation:
    """VOC and COCO metrics of ``predictions[i]`` against ``records[i]``."""
    gt = ground_truth_of(records)
    return Evaluation(
        voc=evaluate_voc(gt, predictions, classes),
        coco=evaluate_coco(gt, predictions, classes),
        predictions=predictions,
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
    return evaluate_predictions(dataset.records, predictions, dataset.classes, ms)


def write_evaluation_files(
    out_dir: str | os.PathLike[str], evaluation: Evaluation, classes: tuple[str, ...]
) -> dict[str, Path]:
    """summary.json, per_class.md, predictions_coco.json and pr_curves.png in ``out_dir``."""
    results = coco_results(evaluation.predictions, classes)
    return write_evaluation(out_dir, evaluation.voc, evaluation.coco, classes, results)
