"""Evaluate a saved checkpoint on a split of a dataset (``prodet evaluate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from annotations.pickle_store import load_dataset
from datasets.augment import DetectionTransform, build_transform
from datasets.detection_dataset import DetectionDataset
from detection.checkpoint import load_checkpoint
from detection.config import TrainConfig, load_config
from detection.evaluate import evaluate_model, write_evaluation_files
from detection.model_factory import build_model
from detection.pr_plots import per_class_table


def model_from_checkpoint(
    checkpoint: dict[str, Any], *, use_ema: bool = False
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the trained model (eval mode, CPU) and its config from a loaded checkpoint."""
    config = load_config(None, _flatten(checkpoint["config"]))
    model = build_model(config, len(checkpoint["classes"]), pretrained=False)
    state = (
        checkpoint["ema"] if use_ema and checkpoint.get("ema") is not None else checkpoint["model"]
    )
    model.load_state_dict(state)
    return model.eval(), config


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
    use_ema: bool = False,
) -> dict[str, Any]:
    """Run the checkpoint over ``split`` and write the evaluation files into ``out_dir``.

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
    model, config = model_from_checkpoint(checkpoint, use_ema=use_ema)
    transform = eval_transform(checkpoint["input"])
    dataset = DetectionDataset(voc, split, transform=transform)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    evaluation = evaluate_model(model.to(device), dataset, device=device, batch_size=batch_size)
    write_evaluation_files(Path(out_dir), evaluation, voc.classes)
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
