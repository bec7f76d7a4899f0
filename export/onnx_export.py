"""Trace a detector into an ONNX file that follows Contract 3 (``docs/architecture.md``).

The exporter is chosen here and nowhere else. As of torch 2.14 the default
``torch.export``-based exporter (``dynamo=True``) fails on torchvision's detection models
(pytorch/vision#9462), while the TorchScript tracer (``dynamo=False``) with an explicit
opset works: ``USE_DYNAMO`` and ``OPSET`` pin that. Tracing records only the path the
example input took, so the export modules (``export.onnx_ssd``, ``export.onnx_fast_rcnn``)
have no data-dependent branches, the example is a batch of real images, and the parity
gate (``export.parity``) runs the graph on other images and batch sizes.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
import torch
from torch import Tensor, nn
from torchvision.models.detection.ssd import SSD

from prodet.annotations.atomic import atomic_write_bytes
from prodet.datasets.geometry import check_resize_mode
from prodet.detection.fast_rcnn import FastRCNN
from prodet.export.onnx_contract import INPUT_NAME, OUTPUT_NAMES, ModelMetadata, metadata_props

if TYPE_CHECKING:
    from prodet.export.onnx_fast_rcnn import FastRCNNExport
    from prodet.export.onnx_ssd import SSDExport

USE_DYNAMO = False
OPSET = 17
EXPORTER = f"torch {torch.__version__.split('+')[0]} torch.onnx.export(dynamo=False)"


def export_module(model: nn.Module, size: int, *, half: bool = False) -> SSDExport | FastRCNNExport:
    """The batch-friendly export module for a trained ``model`` at input side ``size``.

    Args:
        half: float16 network (backbone and heads; post-processing stays float32); built
            on a copy, so ``model`` stays float32.

    Raises:
        ValueError: the model is neither an SSD nor a Fast R-CNN with an RPN.
    """
    if half:
        model = copy.deepcopy(model)
    if isinstance(model, SSD):
        from prodet.export.onnx_ssd import SSDExport

        return SSDExport(model, size, half=half).eval()
    if isinstance(model, FastRCNN):
        from prodet.export.onnx_fast_rcnn import FastRCNNExport

        return FastRCNNExport(model, size, half=half).eval()
    raise ValueError(
        f"cannot export {type(model).__name__}: only SSD and Fast R-CNN (detection.ssd, "
        "detection.fast_rcnn) are supported"
    )


def trace_to_onnx(module: nn.Module, example: Tensor, *, dynamic_batch: bool) -> onnx.ModelProto:
    """Trace ``module`` on ``example`` (float32 ``[B, 3, S, S]``) into an ONNX model.

    Args:
        module: from ``export_module``, in eval mode.
        example: real, normalised images; with ``dynamic_batch=False`` its batch size is
            the graph's fixed batch size.
        dynamic_batch: make dimension 0 of the input and every output symbolic (``batch``).

    Returns:
        The model, without metadata (``add_metadata``).
    """
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic_batch else None
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's own notices (deprecation of this exporter, static shape checks in
        # the backbone, strided slices left unfolded) are expected; the parity gate is
        # what proves the graph right.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works; torch's stub says path
            dynamo=USE_DYNAMO,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
        )
    return onnx.load_from_string(buffer.getvalue())


def checkpoint_val_map(checkpoint: Mapping[str, Any]) -> float | None:
    """The checkpoint's own validation VOC area mAP@0.5 (its epoch's row), if it has one."""
    epoch = checkpoint.get("epoch")
    for row in reversed(checkpoint.get("history") or []):
        if row.get("epoch") == epoch and "val_map_area" in row:
            return float(row["val_map_area"])
    best = checkpoint.get("best_map")
    return float(best) if best is not None and best >= 0 else None


def contract_metadata(
    *,
    checkpoint: Mapping[str, Any],
    head: str,
    backbone: str,
    detections_per_img: int,
    score_thresh: float,
    precision: str = "fp32",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Contract 3's ``metadata_props`` for a model exported from ``checkpoint`` now.

    Args:
        checkpoint: a loaded checkpoint (``classes``, ``input``, ``dataset_hash``, ...).
        head, backbone: the config's names (``ssd``, ``efficientnet_lite0``, ...).
        detections_per_img, score_thresh: as used by the graph.
        precision: ``fp32``, ``fp16`` or ``int8``.
        extra: additional string keys (e.g. the mAP change of a quantised model).

    Raises:
        ValueError: an unknown ``precision``, or an input ``mean``/``std`` that is not
            three numbers.
    """
    spec = checkpoint["input"]
    metadata = ModelMetadata(
        classes=tuple(checkpoint["classes"]),
        input_size=int(spec["size"]),
        mean=_rgb(spec["mean"]),
        std=_rgb(spec["std"]),
        resize_mode=check_resize_mode(str(spec["resize_mode"])),
        detections_per_img=int(detections_per_img),
        score_thresh=float(score_thresh),
        head=head,
        backbone=backbone,
        val_map=checkpoint_val_map(checkpoint),
        precision=precision,
        dataset_hash=str(checkpoint.get("dataset_hash", "")),
        exporter=EXPORTER,
        opset=str(OPSET),
        exported_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return metadata_props(metadata, extra)


def _rgb(values: Sequence[float]) -> tuple[float, float, float]:
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def set_metadata(model: onnx.ModelProto, props: Mapping[str, str]) -> None:
    """Replace ``model``'s ``metadata_props`` with ``props`` (all values strings)."""
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def save_checked(model: onnx.ModelProto, path: str | Path) -> Path:
    """Run ``onnx.checker`` (with shape inference) on ``model`` and write it to ``path``.

    Raises:
        onnx.checker.ValidationError: the graph is not valid ONNX.
    """
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, model.SerializeToString())
    return path
