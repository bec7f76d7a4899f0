"""A tiny ONNX detector that obeys Contract 3, built with ``onnx.helper`` (no torch).

Its answers are computable by hand. For a batch of normalised images ``x``:

* ``m = mean(x)`` over channels and pixels, ``s = sigmoid(m)``;
* raw scores ``s * MULTIPLIERS`` (descending), and row ``j`` is valid when its raw score is
  ``> THRESHOLD``; valid rows come first because the multipliers descend;
* ``boxes`` are the constant ``BOXES`` (model-input pixels) on valid rows, 0 on padding;
* ``labels`` the constant ``LABELS`` on valid rows, 0 on padding; ``scores`` the raw
  scores on valid rows, 0 on padding; ``num_detections`` the number of valid rows.

With ``mean = std = 0.5, 0.25`` a white image normalises to ``2`` (scores 0.881, 0.617,
0.396: three detections), mid-gray 128 to about ``0`` (0.502, 0.351: two) and black to
``-2`` (0.119, ...: none).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ("__background__", "bottle", "can")
INPUT_SIZE = 64
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
MULTIPLIERS = (1.0, 0.7, 0.45)
THRESHOLD = 0.3
BOXES = ((8.0, 8.0, 40.0, 40.0), (16.0, 24.0, 56.0, 60.0), (0.0, 0.0, 64.0, 64.0))
LABELS = (1, 2, 1)


def expected_scores(normalised_mean: float) -> list[float]:
    """The valid scores the model returns for an input whose normalised mean is given."""
    s = 1.0 / (1.0 + np.exp(-normalised_mean))
    return [float(s * m) for m in MULTIPLIERS if s * m > THRESHOLD]


def metadata(**overrides: str | None) -> dict[str, str]:
    """The contract's metadata_props for the tiny model; ``None`` removes a key."""
    props: dict[str, str | None] = {
        "prodet_format": "1",
        "classes": json.dumps(list(CLASSES)),
        "input_size": str(INPUT_SIZE),
        "mean": json.dumps(list(MEAN)),
        "std": json.dumps(list(STD)),
        "resize_mode": "letterbox",
        "box_format": "xyxy_pixels_model_input",
        "head": "ssd",
        "backbone": "tiny-test",
        "dataset_hash": "0" * 64,
        "val_map": "0.5",
        "exporter": "tests/serve/tiny_model.py",
        "opset": "17",
        "exported_at": "2025-01-01T00:00:00Z",
        "detections_per_img": str(len(BOXES)),
        "score_thresh": str(THRESHOLD),
        "precision": "fp32",
    }
    props.update(overrides)
    return {k: v for k, v in props.items() if v is not None}


def build_model(
    *,
    input_size: int = INPUT_SIZE,
    boxes: Sequence[Sequence[float]] = BOXES,
    labels: Sequence[int] = LABELS,
    count_offset: int = 0,
    output_names: Sequence[str] = ("boxes", "scores", "labels", "num_detections"),
    **metadata_overrides: str | None,
) -> onnx.ModelProto:
    """The tiny detector; ``count_offset`` adds to ``num_detections`` (breaks the contract)."""
    rows = len(boxes)
    multipliers = np.asarray(MULTIPLIERS[:rows], dtype=np.float32)[None, :]
    box_name, score_name, label_name, count_name = output_names
    inits = [
        numpy_helper.from_array(multipliers, "multipliers"),
        numpy_helper.from_array(np.float32([THRESHOLD]), "threshold"),
        numpy_helper.from_array(np.asarray(boxes, dtype=np.float32)[None], "const_boxes"),
        numpy_helper.from_array(np.asarray(labels, dtype=np.int64)[None], "const_labels"),
        numpy_helper.from_array(np.int64([1]), "axis1"),
        numpy_helper.from_array(np.int64([2]), "axis2"),
        numpy_helper.from_array(np.int64([count_offset]), "count_offset"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sigmoid", ["m"], ["s"]),
        helper.make_node("Unsqueeze", ["s", "axis1"], ["s2"]),
        helper.make_node("Mul", ["s2", "multipliers"], ["raw"]),
        helper.make_node("Greater", ["raw", "threshold"], ["valid"]),
        helper.make_node("Cast", ["valid"], ["valid_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["valid"], ["valid_i"], to=TensorProto.INT64),
        helper.make_node("Mul", ["raw", "valid_f"], [score_name]),
        helper.make_node("Unsqueeze", ["valid_f", "axis2"], ["valid_3d"]),
        helper.make_node("Mul", ["valid_3d", "const_boxes"], [box_name]),
        helper.make_node("Mul", ["valid_i", "const_labels"], [label_name]),
        helper.make_node("ReduceSum", ["valid_i", "axis1"], ["count"], keepdims=0),
        helper.make_node("Add", ["count", "count_offset"], [count_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT, ["N", 3, input_size, input_size]
            )
        ],
        [
            helper.make_tensor_value_info(box_name, TensorProto.FLOAT, ["N", rows, 4]),
            helper.make_tensor_value_info(score_name, TensorProto.FLOAT, ["N", rows]),
            helper.make_tensor_value_info(label_name, TensorProto.INT64, ["N", rows]),
            helper.make_tensor_value_info(count_name, TensorProto.INT64, ["N"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = metadata(input_size=str(input_size), detections_per_img=str(rows), **metadata_overrides)
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def save_model(path: Path, **kwargs: object) -> Path:
    """Write ``build_model(**kwargs)`` to ``path`` atomically and return ``path``."""
    model = build_model(**kwargs)  # type: ignore[arg-type]
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path
