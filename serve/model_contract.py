"""Contract 3 (``docs/architecture.md``): what a served ONNX model must take, return and say.

``parse_metadata`` turns the model's ``metadata_props`` into a typed ``ModelMetadata``;
``check_signature`` checks the graph's input and outputs; ``check_outputs`` checks what one
``run`` returned. Each raises ``ModelContractError`` naming the key or tensor at fault, so a
broken export is refused at load (and at hot reload) instead of answering wrong boxes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT_VERSION = "1"
BOX_FORMAT = "xyxy_pixels_model_input"
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox")
INPUT_NAME = "images"
OUTPUT_NAMES: tuple[str, ...] = ("boxes", "scores", "labels", "num_detections")
_OUTPUT_TYPES = {
    "boxes": "tensor(float)",
    "scores": "tensor(float)",
    "labels": "tensor(int64)",
    "num_detections": "tensor(int64)",
}
_OUTPUT_RANKS = {"boxes": 3, "scores": 2, "labels": 2, "num_detections": 1}


class ModelContractError(ValueError):
    """The model file does not follow Contract 3 (the message says which part)."""


@dataclass(frozen=True)
class ModelMetadata:
    """The contract's ``metadata_props``, parsed.

    ``classes[0]`` is ``"__background__"``; ``mean`` and ``std`` are per RGB channel in
    ``0..1`` pixel units; ``val_map`` is ``None`` when the exporter did not record one.
    """

    classes: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str
    detections_per_img: int
    score_thresh: float
    head: str
    backbone: str
    val_map: float | None
    precision: str
    dataset_hash: str
    exporter: str
    opset: str
    exported_at: str


def _required(props: dict[str, str], key: str) -> str:
    if key not in props:
        raise ModelContractError(
            f"model metadata lacks {key!r} (has {sorted(props)}); re-export with `prodet export`"
        )
    return props[key]


def _json(props: dict[str, str], key: str) -> Any:
    raw = _required(props, key)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelContractError(
            f"model metadata {key!r} is not JSON ({exc}): {raw[:80]!r}"
        ) from None


def _number(props: dict[str, str], key: str, kind: type[int] | type[float]) -> Any:
    raw = _required(props, key)
    try:
        return kind(raw)
    except ValueError:
        raise ModelContractError(
            f"model metadata {key!r} must be {kind.__name__}, got {raw!r}"
        ) from None


def _triple(props: dict[str, str], key: str, *, positive: bool) -> tuple[float, float, float]:
    value = _json(props, key)
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    ):
        raise ModelContractError(f"model metadata {key!r} must be 3 numbers, got {value!r}")
    if positive and min(value) <= 0:
        raise ModelContractError(f"model metadata {key!r} must be positive, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _optional_float(props: dict[str, str], key: str) -> float | None:
    try:
        value = float(props.get(key, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_metadata(props: dict[str, str]) -> ModelMetadata:
    """Parse and check the contract's ``metadata_props``.

    Raises:
        ModelContractError: a required key is missing or malformed.
    """
    version = _required(props, "prodet_format")
    if version != FORMAT_VERSION:
        raise ModelContractError(
            f"model prodet_format is {version!r}; this service reads format {FORMAT_VERSION!r}"
        )
    box_format = _required(props, "box_format")
    if box_format != BOX_FORMAT:
        raise ModelContractError(f"model box_format must be {BOX_FORMAT!r}, got {box_format!r}")
    classes = _json(props, "classes")
    if not (
        isinstance(classes, list)
        and len(classes) >= 2
        and all(isinstance(c, str) and c for c in classes)
        and classes[0] == "__background__"
        and len(set(classes)) == len(classes)
    ):
        raise ModelContractError(
            "model metadata 'classes' must be a JSON list of distinct names starting with "
            f"'__background__' and at least one object class, got {str(classes)[:120]}"
        )
    size = _number(props, "input_size", int)
    per_img = _number(props, "detections_per_img", int)
    if size < 1 or per_img < 1:
        raise ModelContractError(
            f"input_size and detections_per_img must be positive, got {size} and {per_img}"
        )
    resize_mode = _required(props, "resize_mode")
    if resize_mode not in RESIZE_MODES:
        raise ModelContractError(
            f"model resize_mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode!r}"
        )
    score_thresh = _number(props, "score_thresh", float)
    if not 0.0 <= score_thresh <= 1.0:
        raise ModelContractError(f"model score_thresh must be in [0, 1], got {score_thresh}")
    return ModelMetadata(
        classes=tuple(classes),
        input_size=size,
        mean=_triple(props, "mean", positive=False),
        std=_triple(props, "std", positive=True),
        resize_mode=resize_mode,
        detections_per_img=per_img,
        score_thresh=score_thresh,
        head=props.get("head", ""),
        backbone=props.get("backbone", ""),
        val_map=_optional_float(props, "val_map"),
        precision=props.get("precision", ""),
        dataset_hash=props.get("dataset_hash", ""),
        exporter=props.get("exporter", ""),
        opset=props.get("opset", ""),
        exported_at=props.get("exported_at", ""),
    )


def check_signature(inputs: Sequence[Any], outputs: Sequence[Any], input_size: int) -> None:
    """Check an onnxruntime session's ``get_inputs()`` and ``get_outputs()``.

    Raises:
        ModelContractError: wrong input name, type or shape, or a missing or mistyped output.
    """
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = [node.name for node in inputs]
        raise ModelContractError(f"model must have one input {INPUT_NAME!r}, has {names}")
    node = inputs[0]
    if node.type != "tensor(float)" or len(node.shape) != 4:
        raise ModelContractError(
            f"input {INPUT_NAME!r} must be float32 [N, 3, S, S], is {node.type} {node.shape}"
        )
    fixed = node.shape[1:]
    expected = [3, input_size, input_size]
    if any(isinstance(d, int) and d != e for d, e in zip(fixed, expected, strict=True)):
        raise ModelContractError(
            f"input {INPUT_NAME!r} has shape {node.shape}; metadata input_size={input_size} "
            f"means [N, 3, {input_size}, {input_size}]"
        )
    found = {node.name: node for node in outputs}
    for name in OUTPUT_NAMES:
        if name not in found:
            raise ModelContractError(f"model lacks output {name!r} (has {sorted(found)})")
        out = found[name]
        if out.type != _OUTPUT_TYPES[name] or len(out.shape) != _OUTPUT_RANKS[name]:
            raise ModelContractError(
                f"output {name!r} must be {_OUTPUT_TYPES[name]} of rank {_OUTPUT_RANKS[name]}, "
                f"is {out.type} {out.shape}"
            )


def check_outputs(
    outputs: dict[str, np.ndarray], batch: int, detections_per_img: int, num_classes: int
) -> None:
    """Check one ``run``'s outputs for a batch of ``batch`` images.

    Raises:
        ModelContractError: shapes disagree, ``num_detections`` is outside ``[0, D]``, or a
            valid row's label is not an object class.
    """
    boxes, scores = outputs["boxes"], outputs["scores"]
    labels, counts = outputs["labels"], outputs["num_detections"]
    rows = boxes.shape[1] if boxes.ndim == 3 else -1
    if (
        boxes.shape != (batch, rows, 4)
        or scores.shape != (batch, rows)
        or labels.shape != (batch, rows)
        or counts.shape != (batch,)
    ):
        raise ModelContractError(
            f"outputs for {batch} images have shapes boxes {boxes.shape}, scores {scores.shape}, "
            f"labels {labels.shape}, num_detections {counts.shape}; expected "
            f"[{batch}, D, 4], [{batch}, D], [{batch}, D], [{batch}]"
        )
    if rows > detections_per_img:
        raise ModelContractError(f"{rows} output rows exceed detections_per_img")
    if counts.size and (counts.min() < 0 or counts.max() > rows):
        raise ModelContractError(f"num_detections {counts.tolist()} outside [0, {rows}]")
    valid = np.arange(rows)[None, :] < counts[:, None]
    bad = labels[valid]
    if bad.size and (bad.min() < 1 or bad.max() >= num_classes):
        raise ModelContractError(
            f"labels of valid rows must be in [1, {num_classes - 1}], got {np.unique(bad).tolist()}"
        )
