"""Evaluate a saved checkpoint on a split of a dataset (``prodet evaluate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prodet.annotations.pickle_store import load_dataset
from prodet.datasets.augment import DetectionTransform, build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.config import TrainConfig, load_config
from prodet.detection.evaluate import evaluate_model, write_evaluation_files
from prodet.detection.model_factory import build_model
from prodet.detection.pr_plots import per_class_table
from prodet.detection.proposals import proposal_fn


def inference_overrides(flat_config: dict[str, Any], proposals: int | None) -> dict[str, Any]:
    """Config overrides for inference-only settings (``--proposals``).

    ``proposals``: Fast R-CNN's RoIs per image after the RPN's NMS at test time (the
    trained default is ``fast_rcnn.rpn_post_nms_test``); fewer is faster, since fc6/fc7 and
    RoI pooling cost grows with them.

    Raises:
        ValueError: ``proposals`` for an SSD checkpoint, or below 1.
    """
    if proposals is None:
        return {}
    head = flat_config.get("head")
    if head != "fast_rcnn":
        raise ValueError(f"--proposals applies to Fast R-CNN checkpoints, this one is {head}")
    if proposals < 1:
        raise ValueError(f"--proposals must be at least 1, got {proposals}")
    return {
        "fast_rcnn.rpn_post_nms_test": proposals,
        "fast_rcnn.rpn_pre_nms_test": max(
            proposals, int(flat_config.get("fast_rcnn.rpn_pre_nms_test", proposals))
        ),
    }


def model_from_checkpoint(
    checkpoint: dict[str, Any],
    *,
    use_ema: bool | None = None,
    channels_last: bool = False,
    proposals: int | None = None,
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the trained model (eval mode, CPU) and its config from a loaded checkpoint.

    ``use_ema``: True for the EMA weights, False for the raw ones; None (default) takes the
    EMA weights when the run kept them, since its validation and best checkpoint used them.

    ``channels_last`` stores the weights NHWC (faster eager convolutions); leave it off for
    ONNX export, where the layout is the runtime's business.

    ``proposals``: Fast R-CNN's test-time RoIs per image (see ``inference_overrides``).
    """
    flat = _flatten(checkpoint["config"])
    flat.update(inference_overrides(flat, proposals))
    config = load_config(None, flat)
    model = build_model(config, len(checkpoint["classes"]), pretrained=False)
    has_ema = checkpoint.get("ema") is not None
    if use_ema and not has_ema:
        raise ValueError("this checkpoint has no EMA weights (train with --ema to keep them)")
    state = checkpoint["ema"] if has_ema and use_ema is not False else checkpoint["model"]
    model.load_state_dict(state)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), config


def score_threshold_of(config: TrainConfig) -> float:
    """The score threshold the model applies to its detections (its head's ``score_thresh``)."""
    return config.ssd.score_thresh if config.head == "ssd" else config.fast_rcnn.score_thresh


def eval_transform(input_spec: dict[str, Any]) -> DetectionTransform:
    """The ``eval`` preset matching a checkpoint's ``input`` entry (size, mean, std, resize)."""
    return build_transform(
        "eval",
        size=input_spec["size"],
        mean=input_spec["mean"],
        std=input_spec["std"],
        resize_mode=input_spec["resize_mode"],
    )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def evaluate_checkpoint(
    checkpoint_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    split: str,
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    use_ema: bool | None = None,
    proposals: int | None = None,
    proposals_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the checkpoint over ``split`` and write the evaluation files into ``out_dir``
    (``detection.evaluate.write_evaluation_files``; the confusion matrix at the checkpoint's
    own score threshold).

    Raises:
        ValueError: the checkpoint's classes differ from the dataset's, or the split is
            unknown (the message lists the known ones).
    """
    checkpoint = load_checkpoint(checkpoint_path)
    voc = load_dataset(data_path)
    if tuple(checkpoint["classes"]) != voc.classes:
        raise ValueError(
            f"{checkpoint_path} was trained on classes {checkpoint['classes'][1:]}, but "
            f"{data_path} has {list(voc.classes[1:])}"
        )
    nhwc = bool(checkpoint["config"].get("channels_last", False))
    model, config = model_from_checkpoint(
        checkpoint, use_ema=use_ema, channels_last=nhwc, proposals=proposals
    )
    transform = eval_transform(checkpoint["input"])
    dataset = DetectionDataset(voc, split, transform=transform)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    boxes_file = proposals_file or config.fast_rcnn.proposals_file
    if boxes_file and config.head != "fast_rcnn":
        raise ValueError(
            f"--proposals-file applies to Fast R-CNN, this checkpoint is {config.head}"
        )
    evaluation = evaluate_model(
        model.to(device),
        dataset,
        device=device,
        batch_size=batch_size,
        proposals=proposal_fn(boxes_file) if boxes_file else None,
    )
    write_evaluation_files(
        Path(out_dir), evaluation, voc.classes, score_threshold=score_threshold_of(config)
    )
    headline = {
        "split": split,
        "images": len(dataset),
        "head": config.head,
        "backbone": config.backbone,
        "voc_map_area@0.5": round(float(evaluation.voc.map_area), 4),
        "voc07_map_11point@0.5": round(float(evaluation.voc.map_11point), 4),
        "coco_map@[.5:.95]": round(float(evaluation.coco.stats["AP"]), 4),
        "ms_per_image": round(evaluation.ms_per_image, 1),
    }
    return {"headline": headline, "table": per_class_table(evaluation.voc, evaluation.coco)}
