"""``prodet export``: checkpoint -> checked, gated ONNX file (Contract 3).

1. Rebuild the trained model from the checkpoint and load real images of its validation
   split (the split training validated on; topped up from the training split when it is
   smaller than the gate needs), with the eval transform the checkpoint records.
2. Trace the export module on a batch of those images (``export.onnx_export``), write the
   metadata, run ``onnx.checker``.
3. Parity gate: onnxruntime against the eager model on at least 16 of the images, at
   batch sizes 1 and 8 (or the fixed ``--batch``). A failure raises ``ParityError`` and
   leaves the graph beside the output as ``NAME.rejected.onnx`` for inspection.
4. ``fp16`` / ``int8``: convert the gated fp32 graph and measure the VOC mAP of both on
   the whole validation split in onnxruntime; the change is reported and recorded in the
   metadata instead of the strict gate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from prodet.annotations.pickle_store import load_dataset
from prodet.annotations.schema import VocDataset
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.checkpoint_eval import eval_transform, model_from_checkpoint
from prodet.detection.config import TrainConfig
from prodet.detection.fast_rcnn import FastRCNN
from prodet.detection.trainer import resolve_splits
from prodet.export.onnx_contract import PRECISIONS, ModelMetadata, parse_metadata
from prodet.export.onnx_evaluate import eval_dataset, evaluate_session
from prodet.export.onnx_export import (
    contract_metadata,
    export_module,
    save_checked,
    set_metadata,
    trace_to_onnx,
)
from prodet.export.ort_runner import open_session
from prodet.export.parity import ParityReport, check_parity, raise_on_failure

MIN_PARITY_IMAGES = 16
GATE_BATCH_SIZES: tuple[int, ...] = (1, 8)


@dataclass(frozen=True)
class ExportOptions:
    """What ``prodet export`` was asked for.

    Attributes:
        batch: fixed batch size of the graph; None for a dynamic one.
        precision: ``fp32``, ``fp16`` or ``int8``.
        data: dataset ``.pkl`` of the gate images (default: the checkpoint's ``data``).
        calibration: dataset ``.pkl`` whose images calibrate ``int8`` (its split named
            like the checkpoint's training split, else all its images).
        calibration_images: how many of them.
        parity_images: images in the gate (at least 16).
        use_ema: export the EMA weights (True), the raw ones (False), or the EMA ones when
            the checkpoint kept them (None).
        proposals: Fast R-CNN's RoIs per image (None: the checkpoint's test setting).
        score_thresh: override the model's score threshold (None: keep the checkpoint's).
        threads: onnxruntime intra-op threads for the checks (0: its default).
    """

    batch: int | None = None
    precision: str = "fp32"
    data: Path | None = None
    calibration: Path | None = None
    calibration_images: int = 64
    parity_images: int = MIN_PARITY_IMAGES
    use_ema: bool | None = None
    proposals: int | None = None
    score_thresh: float | None = None
    threads: int = 0


@dataclass
class ExportResult:
    """What was written and how it was checked; ``maps`` holds the fp32 and converted
    validation mAPs of an fp16/int8 export (empty for fp32)."""

    path: Path
    metadata: dict[str, str]
    parity: ParityReport
    maps: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _check_options(options: ExportOptions) -> None:
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if options.batch is not None and options.batch < 1:
        raise ValueError(f"--batch must be a positive number or 'dynamic', got {options.batch}")
    if options.parity_images < MIN_PARITY_IMAGES:
        raise ValueError(f"the parity gate needs at least {MIN_PARITY_IMAGES} images")
    if options.precision == "int8" and options.calibration is None:
        raise ValueError("--int8 needs --calibration dataset.pkl (real images to calibrate on)")
    if options.score_thresh is not None and not 0.0 <= options.score_thresh < 1.0:
        raise ValueError(f"--score-thresh must be in [0, 1), got {options.score_thresh}")


def gate_ids(voc: VocDataset, config: TrainConfig, count: int) -> tuple[list[str], list[str]]:
    """``(gate ids, validation ids)``: the first ``count`` validation images, topped up from
    the training split when validation is smaller.

    A run without validation (``val_split: none``) gets the gate images as its
    "validation" ids: fp16 and int8 then report their mAP change on those (training)
    images, which still measures what the conversion costs.
    """
    train, val = resolve_splits(voc, config)
    chosen = list(val[:count]) + [i for i in train if i not in set(val)][: max(count - len(val), 0)]
    if len(chosen) < count:
        raise ValueError(
            f"the parity gate needs {count} real images; the dataset's training and "
            f"validation splits hold only {len(chosen)}"
        )
    return chosen, list(val) or chosen


def _stack(dataset: DetectionDataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _set_score_thresh(model: torch.nn.Module, value: float) -> None:
    target = model.roi_heads if isinstance(model, FastRCNN) else model
    target.score_thresh = value


def _gate_dataset(
    checkpoint: dict[str, Any], config: TrainConfig, options: ExportOptions
) -> tuple[VocDataset, list[str]]:
    """The dataset of the gate images, and notes about it for the user."""
    data = options.data or (Path(config.data) if config.data else None)
    if data is None or not Path(data).is_file():
        raise ValueError(
            f"the gate needs the checkpoint's dataset ({data or 'not recorded'}); pass --data"
        )
    voc = load_dataset(data)
    if list(voc.classes) != list(checkpoint["classes"]):
        raise ValueError(
            f"{data} has classes {list(voc.classes)}, the checkpoint {checkpoint['classes']}"
        )
    if voc.content_hash != checkpoint.get("dataset_hash"):
        return voc, [f"{data} is not the dataset the checkpoint was trained on (hash differs)"]
    return voc, []


def _example(images: torch.Tensor, batch: int | None) -> torch.Tensor:
    """The tracing input: 2 real images for a dynamic batch, else ``batch`` of them."""
    count = batch or 2
    return images[torch.arange(count) % len(images)]


def export_checkpoint(
    checkpoint_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    options: ExportOptions | None = None,
) -> ExportResult:
    """Export, check and gate ``checkpoint_path`` into ``out_path`` (see the module doc).

    Raises:
        ValueError: bad options, missing dataset, or classes that differ from the
            checkpoint's.
        ParityError: onnxruntime's detections differ from PyTorch's.
    """
    options = options or ExportOptions()
    _check_options(options)
    out = Path(out_path)
    checkpoint = load_checkpoint(checkpoint_path)
    model, config = model_from_checkpoint(
        checkpoint, use_ema=options.use_ema, proposals=options.proposals
    )
    if options.score_thresh is not None:
        _set_score_thresh(model, options.score_thresh)
    voc, notes = _gate_dataset(checkpoint, config, options)
    ids, val_ids = gate_ids(voc, config, options.parity_images)
    spec = checkpoint["input"]
    transform = eval_transform(spec)
    images = _stack(DetectionDataset(voc, ids=ids, transform=transform))
    size, dynamic = int(spec["size"]), options.batch is None
    example = _example(images, options.batch)

    module = export_module(model, size)
    graph = trace_to_onnx(module, example, dynamic_batch=dynamic)
    props = contract_metadata(
        checkpoint=checkpoint,
        head=config.head,
        backbone=config.backbone,
        detections_per_img=module.detections_per_img,
        score_thresh=module.score_thresh,
        extra=(
            {"proposals": str(config.fast_rcnn.rpn_post_nms_test)}
            if config.head == "fast_rcnn"
            else None
        ),
    )
    set_metadata(graph, props)
    onnx.checker.check_model(graph, full_check=True)
    session = open_session(graph.SerializeToString(), threads=options.threads)
    batches = GATE_BATCH_SIZES if options.batch is None else (options.batch,)
    report = check_parity(model, session, images, ids, batch_sizes=batches, classes=voc.classes)
    if not report.passed:
        rejected = save_checked(graph, out.with_name(f"{out.stem}.rejected.onnx"))
        raise_on_failure(report, hint=f"the rejected graph is at {rejected}")

    result = ExportResult(out, props, report, notes=notes)
    if options.precision != "fp32":
        metadata = parse_metadata(props)
        if options.precision == "fp16":
            half = export_module(model, size, half=True)
            graph = trace_to_onnx(half, example, dynamic_batch=dynamic)
        else:
            from prodet.export.quantize import to_int8

            graph = to_int8(graph, _calibration_images(options, metadata, config.train_split))
        val = eval_dataset(voc, None, metadata, ids=val_ids)
        _record_map_change(session, graph, props, val, options, result)
    save_checked(graph, out)
    return result


def _calibration_images(
    options: ExportOptions, metadata: ModelMetadata, train_split: str
) -> np.ndarray:
    """``calibration_images`` images drawn (seeded) from the ``--calibration`` dataset's
    ``train_split`` (all its images when it has no such split)."""
    if options.calibration is None:
        raise ValueError("--int8 needs --calibration dataset.pkl (real images to calibrate on)")
    voc = load_dataset(options.calibration)
    pool = list(voc.splits.get(train_split, [r.image_id for r in voc.records]))
    picked = np.random.default_rng(0).permutation(pool)[: options.calibration_images].tolist()
    return _stack(eval_dataset(voc, None, metadata, ids=sorted(picked))).numpy()


def _record_map_change(
    fp32_session: ort.InferenceSession,
    converted: onnx.ModelProto,
    props: dict[str, str],
    val: DetectionDataset,
    options: ExportOptions,
    result: ExportResult,
) -> None:
    """Measure both graphs' validation mAP; store it in ``result`` and the metadata."""
    batch = options.batch or 8
    fp32_map = float(evaluate_session(fp32_session, val, batch_size=batch).voc.map_area)
    session = open_session(converted.SerializeToString(), threads=options.threads)
    new_map = float(evaluate_session(session, val, batch_size=batch).voc.map_area)
    result.maps = {"fp32": fp32_map, options.precision: new_map}
    result.metadata = {
        **props,
        "precision": options.precision,
        "val_map_onnx_fp32": f"{fp32_map:.6f}",
        "val_map_onnx": f"{new_map:.6f}",
        "val_map_change": f"{new_map - fp32_map:+.6f}",
    }
    set_metadata(converted, result.metadata)
