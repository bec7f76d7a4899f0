"""Measure an exported model's accuracy through onnxruntime (``prodet evaluate --onnx``).

The eval transform is rebuilt from the model's own metadata (``input_size``, ``mean``,
``std``, ``resize_mode``), predictions are mapped back to original-image pixels, and the
same metric suite and files as a checkpoint's evaluation are produced (VOC07 11-point
and area AP@0.5, COCO mAP@[.5:.95], per-class table, PR curves, COCO predictions with the
dataset's COCO image ids, and a confusion matrix at the model's ``score_thresh``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from prodet.annotations.pickle_store import load_dataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.geometry import boxes_to_original
from prodet.datasets.loader import build_loader
from prodet.detection.evaluate import Evaluation, evaluate_predictions, write_evaluation_files
from prodet.detection.pr_plots import per_class_table
from prodet.export.onnx_contract import ModelMetadata, check_session
from prodet.export.ort_runner import open_session, run_batches


def eval_dataset(
    voc: Any, split: str | None, metadata: ModelMetadata, *, ids: list[str] | None = None
) -> DetectionDataset:
    """``split`` (or ``ids``) of ``voc`` with the eval transform the model's metadata describes."""
    transform = build_transform(
        "eval",
        size=metadata.input_size,
        mean=metadata.mean,
        std=metadata.std,
        resize_mode=metadata.resize_mode,
    )
    return DetectionDataset(voc, split, ids=ids, transform=transform)


def onnx_predictions(
    session: ort.InferenceSession, dataset: DetectionDataset, *, batch_size: int = 8
) -> tuple[list[dict[str, np.ndarray]], float]:
    """Run the model over ``dataset``.

    Returns:
        One ``{"image_id", "boxes" [K, 4] in original-image pixels, "scores" [K], "labels"
        [K]}`` per image in dataset order, and milliseconds per image spent in
        ``session.run`` (decoding and resizing excluded).
    """
    loader = build_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, seed=0)
    predictions: list[dict[str, np.ndarray]] = []
    seconds = 0.0
    for images, targets in loader:
        array = images.numpy()
        started = time.perf_counter()
        detections = run_batches(session, array, batch_size)
        seconds += time.perf_counter() - started
        for det, target in zip(detections, targets, strict=True):
            boxes = boxes_to_original(det.boxes, target["geometry"])
            predictions.append(
                {
                    "image_id": target["image_id"],
                    "boxes": boxes,
                    "scores": det.scores,
                    "labels": det.labels,
                }
            )
    return predictions, 1000.0 * seconds / max(len(predictions), 1)


def evaluate_session(
    session: ort.InferenceSession, dataset: DetectionDataset, *, batch_size: int = 8
) -> Evaluation:
    """VOC and COCO metrics of the ONNX model on ``dataset`` (from ``eval_dataset``)."""
    predictions, ms = onnx_predictions(session, dataset, batch_size=batch_size)
    return evaluate_predictions(dataset, predictions, ms)


def evaluate_onnx(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    split: str,
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    threads: int = 0,
) -> dict[str, Any]:
    """Run the ONNX model over ``split`` in onnxruntime (CPU) and write the evaluation files.

    Returns:
        ``{"headline": {...}, "table": markdown}`` like ``evaluate_checkpoint``.

    Raises:
        ValueError: the model's classes differ from the dataset's, the model breaks
            Contract 3 (``ModelContractError``), or the split is unknown.
    """
    if not Path(model_path).is_file():
        raise ValueError(f"{model_path}: no such ONNX file")
    session = open_session(model_path, threads=threads)
    metadata = check_session(session)
    voc = load_dataset(data_path)
    if metadata.classes != voc.classes:
        raise ValueError(
            f"{model_path} detects classes {list(metadata.classes[1:])}, but {data_path} has "
            f"{list(voc.classes[1:])}"
        )
    dataset = eval_dataset(voc, split, metadata)
    evaluation = evaluate_session(session, dataset, batch_size=batch_size)
    write_evaluation_files(
        Path(out_dir), evaluation, voc.classes, score_threshold=metadata.score_thresh
    )
    headline = {
        "split": split,
        "images": len(dataset),
        "model": str(model_path),
        "runtime": f"onnxruntime {ort.__version__} {session.get_providers()[0]}",
        "head": metadata.head,
        "backbone": metadata.backbone,
        "precision": metadata.precision,
        "batch_size": batch_size,
        "voc_map_area@0.5": round(float(evaluation.voc.map_area), 4),
        "voc07_map_11point@0.5": round(float(evaluation.voc.map_11point), 4),
        "coco_map@[.5:.95]": round(float(evaluation.coco.stats["AP"]), 4),
        "ms_per_image": round(evaluation.ms_per_image, 1),
    }
    return {"headline": headline, "table": per_class_table(evaluation.voc, evaluation.coco)}
