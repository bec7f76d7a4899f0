"""Contract 3 (``docs/architecture.md``): what an exported ONNX model takes, returns and says.

Written once for both sides: the exporter turns a typed ``ModelMetadata`` into the graph's
``metadata_props`` strings with ``metadata_props``; whoever runs a model (the export's
parity gate and evaluation, the service) checks its metadata and signature with
``check_session`` and splits every run's padded outputs with ``unpad``. Each check raises
``ModelContractError`` naming the key or tensor at fault, so a broken export is refused at
load (and at hot reload) instead of answering wrong boxes.

Standard library and numpy only (no torch, onnx or onnxruntime), so the service imports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prodet.datasets.geometry import ResizeMode, check_resize_mode

FORMAT_VERSION = "1"
BOX_FORMAT = "xyxy_pixels_model_input"
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
INPUT_NAME = "images"
OUTPUT_NAMES: tuple[str, ...] = ("boxes", "scores", "labels", "num_detections")
_OUTPUT_TYPES = {  # onnxruntime's type name and the rank of each output
    "boxes": ("tensor(float)", 3),
    "scores": ("tensor(float)", 2),
    "labels": ("tensor(int64)", 2),
    "num_detections": ("tensor(int64)", 1),
}


class ModelContractError(ValueError):
    """The model does not follow Contract 3 (the message says which part)."""


@dataclass(frozen=True)
class ModelMetadata:
    """The contract's ``metadata_props``, typed.

    ``classes[0]`` is ``"__background__"``; ``mean`` and ``std`` are per RGB channel in
    ``0..1`` pixel units; ``val_map`` is ``None`` when the exporter did not record one.
    """

    classes: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: ResizeMode
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


@dataclass(frozen=True)
class Detections:
    """One image's valid output rows, best first.

    Attributes:
        boxes: float32 ``[K, 4]``, ``x1, y1, x2, y2`` in pixels of the ``S x S`` model input.
        scores: float32 ``[K]``, descending.
        labels: int64 ``[K]``, indices into the model's ``classes`` (never 0).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def metadata_props(
    metadata: ModelMetadata, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``metadata_props`` strings that ``parse_metadata`` reads back as ``metadata``.

    Args:
        extra: additional string keys (Fast R-CNN's ``proposals``, a converted model's mAP
            change), written after the contract's own.

    Raises:
        ModelContractError: ``metadata.precision`` is not one of ``PRECISIONS``.
    """
    if metadata.precision not in PRECISIONS:
        raise ModelContractError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {metadata.precision!r}"
        )
    props = {
        "prodet_format": FORMAT_VERSION,
        "classes": json.dumps(list(metadata.classes)),
        "input_size": str(int(metadata.input_size)),
        "mean": json.dumps([float(v) for v in metadata.mean]),
        "std": json.dumps([float(v) for v in metadata.std]),
        "resize_mode": metadata.resize_mode,
        "box_format": BOX_FORMAT,
        "head": metadata.head,
        "backbone": metadata.backbone,
        "dataset_hash": metadata.dataset_hash,
        "val_map": "" if metadata.val_map is None else repr(float(metadata.val_map)),
        "exporter": metadata.exporter,
        "opset": metadata.opset,
        "exported_at": metadata.exported_at,
        "detections_per_img": str(int(metadata.detections_per_img)),
        "score_thresh": repr(float(metadata.score_thresh)),
        "precision": metadata.precision,
    }
    props.update(extra or {})
    return props


def _required(props: Mapping[str, str], key: str) -> str:
    if key not in props:
        raise ModelContractError(
            f"model metadata lacks {key!r} (has {sorted(props)}); re-export with `prodet export`"
        )
    return props[key]


def _json(props: Mapping[str, str], key: str) -> Any:
    raw = _required(props, key)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelContractError(
            f"model metadata {key!r} is not JSON ({exc}): {raw[:80]!r}"
        ) from None


def _number(props: Mapping[str, str], key: str, kind: type[int] | type[float]) -> Any:
    raw = _required(props, key)
    try:
        return kind(raw)
    except ValueError:
        raise ModelContractError(
            f"model metadata {key!r} must be {kind.__name__}, got {raw!r}"
        ) from None


def _triple(props: Mapping[str, str], key: str, *, positive: bool) -> tuple[float, float, float]:
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


def _optional_float(props: Mapping[str, str], key: str) -> float | None:
    try:
        value = float(props.get(key, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_metadata(props: Mapping[str, str]) -> ModelMetadata:
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
    try:
        resize_mode = check_resize_mode(_required(props, "resize_mode"))
    except ValueError as exc:
        raise ModelContractError(f"model {exc}") from None
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
        out, (type_name, rank) = found[name], _OUTPUT_TYPES[name]
        if out.type != type_name or len(out.shape) != rank:
            raise ModelContractError(
                f"output {name!r} must be {type_name} of rank {rank}, is {out.type} {out.shape}"
            )


def check_session(session: Any) -> ModelMetadata:
    """The metadata of an onnxruntime ``InferenceSession``, after checking it and the graph.

    Raises:
        ModelContractError: from ``parse_metadata`` or ``check_signature``.
    """
    metadata = parse_metadata(dict(session.get_modelmeta().custom_metadata_map))
    check_signature(session.get_inputs(), session.get_outputs(), metadata.input_size)
    return metadata


def unpad(
    outputs: Sequence[np.ndarray],
    batch: int,
    *,
    detections_per_img: int | None = None,
    num_classes: int | None = None,
) -> list[Detections]:
    """Check one run's padded outputs and split them per image.

    Args:
        outputs: ``boxes, scores, labels, num_detections`` (``OUTPUT_NAMES`` order) of a
            batch of ``batch`` images.
        detections_per_img, num_classes: the metadata's ``D`` and ``len(classes)``; when
            given, at most ``D`` rows and valid labels in ``[1, num_classes - 1]``.

    Returns:
        ``batch`` ``Detections``, each its image's first ``num_detections`` rows.

    Raises:
        ModelContractError: shapes disagree, ``num_detections`` is outside ``[0, D]``, a
            padding row is not all zeros, or a valid row's label is not an object class.
    """
    boxes, scores, labels, counts = outputs
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
    if detections_per_img is not None and rows > detections_per_img:
        raise ModelContractError(f"{rows} output rows exceed detections_per_img")
    outside = np.flatnonzero((counts < 0) | (counts > rows))
    if outside.size:
        i = int(outside[0])
        raise ModelContractError(f"image {i}: num_detections {int(counts[i])} outside [0, {rows}]")
    valid = np.arange(rows)[None, :] < counts[:, None]
    filled = boxes.any(axis=2) | (scores != 0) | (labels != 0)
    dirty = np.flatnonzero((filled & ~valid).any(axis=1))
    if dirty.size:
        i = int(dirty[0])
        raise ModelContractError(
            f"image {i}: padding rows after row {int(counts[i])} are not all zero"
        )
    bad = labels[valid]
    if num_classes is not None and bad.size and (bad.min() < 1 or bad.max() >= num_classes):
        raise ModelContractError(
            f"labels of valid rows must be in [1, {num_classes - 1}], got {np.unique(bad).tolist()}"
        )
    return [
        Detections(
            boxes[i, :count].astype(np.float32, copy=False),
            scores[i, :count].astype(np.float32, copy=False),
            labels[i, :count].astype(np.int64, copy=False),
        )
        for i, count in enumerate(counts.tolist())
    ]
