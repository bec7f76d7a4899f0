"""A Contract-3 ONNX model whose boxes follow the image content, built without torch.

``tests/serve/tiny_model.py`` answers constant boxes, which check the geometry but not
which pixels the model saw. This one answers two boxes around where the picture's weight
lies, so a decode that moved, turned or squeezed the picture moves its boxes:

* the luma ``Y = 0.299 R + 0.587 G + 0.114 B`` of the normalised input;
* box 0 (label 1, score 0.9): ``HALF`` input pixels around the centre of mass of
  ``Y + 3`` (the bright parts pull it);
* box 1 (label 2, score 0.8): the same around the centre of mass of ``3 - Y`` (the
  dark parts pull it).

Both weights are linear in the pixels, so the boxes move smoothly with them: an error of
a pixel in the geometry moves a box by about a pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.serve.tiny_model import metadata

HALF = 8.0
LUMA = (0.299, 0.587, 0.114)


def build_centroid_model(input_size: int, resize_mode: str) -> onnx.ModelProto:
    """The model for a ``input_size`` square input and ``resize_mode``."""
    grid = np.arange(input_size, dtype=np.float32) + 0.5
    xs = np.broadcast_to(grid[None, :], (input_size, input_size)).copy()
    ys = np.broadcast_to(grid[:, None], (input_size, input_size)).copy()
    inits = [
        numpy_helper.from_array(np.float32(LUMA).reshape(1, 3, 1, 1), "luma_weights"),
        numpy_helper.from_array(np.float32([3.0]), "three"),
        numpy_helper.from_array(np.float32([0.0]), "zero"),
        numpy_helper.from_array(xs, "xs"),
        numpy_helper.from_array(ys, "ys"),
        numpy_helper.from_array(np.float32([[-HALF, -HALF, HALF, HALF]]), "spread"),
        numpy_helper.from_array(np.float32([[0.9, 0.8]]), "const_scores"),
        numpy_helper.from_array(np.int64([[1, 2]]), "const_labels"),
        numpy_helper.from_array(np.int64([2]), "two"),
        numpy_helper.from_array(np.int64([1]), "axis1"),
        numpy_helper.from_array(np.int64([1, 2]), "axes12"),
    ]
    nodes = [
        helper.make_node("Mul", ["images", "luma_weights"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axis1"], ["luma"], keepdims=0),
        helper.make_node("Add", ["luma", "three"], ["bright"]),
        helper.make_node("Sub", ["three", "luma"], ["dark"]),
    ]
    boxes = []
    for name in ("bright", "dark"):
        nodes += [
            helper.make_node("ReduceSum", [name, "axes12"], [f"{name}_mass"], keepdims=0),
            helper.make_node("Mul", [name, "xs"], [f"{name}_x"]),
            helper.make_node("Mul", [name, "ys"], [f"{name}_y"]),
            helper.make_node("ReduceSum", [f"{name}_x", "axes12"], [f"{name}_sx"], keepdims=0),
            helper.make_node("ReduceSum", [f"{name}_y", "axes12"], [f"{name}_sy"], keepdims=0),
            helper.make_node("Div", [f"{name}_sx", f"{name}_mass"], [f"{name}_cx"]),
            helper.make_node("Div", [f"{name}_sy", f"{name}_mass"], [f"{name}_cy"]),
            helper.make_node("Unsqueeze", [f"{name}_cx", "axis1"], [f"{name}_cx2"]),
            helper.make_node("Unsqueeze", [f"{name}_cy", "axis1"], [f"{name}_cy2"]),
            helper.make_node(
                "Concat",
                [f"{name}_cx2", f"{name}_cy2", f"{name}_cx2", f"{name}_cy2"],
                [f"{name}_centre"],
                axis=1,
            ),
            helper.make_node("Add", [f"{name}_centre", "spread"], [f"{name}_box"]),
            helper.make_node("Unsqueeze", [f"{name}_box", "axis1"], [f"{name}_box3"]),
        ]
        boxes.append(f"{name}_box3")
    nodes += [
        helper.make_node("Concat", boxes, ["boxes"], axis=1),
        helper.make_node("Mul", ["bright_cx2", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "const_scores"], ["scores"]),
        helper.make_node("Cast", ["zeros"], ["zeros_i"], to=TensorProto.INT64),
        helper.make_node("Add", ["zeros_i", "const_labels"], ["labels"]),
        helper.make_node("ReduceSum", ["zeros_i", "axis1"], ["no_rows"], keepdims=0),
        helper.make_node("Add", ["no_rows", "two"], ["num_detections"]),
    ]
    graph = helper.make_graph(
        nodes,
        "centroid_detector",
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT, ["N", 3, input_size, input_size]
            )
        ],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 2, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", 2]),
            helper.make_tensor_value_info("num_detections", TensorProto.INT64, ["N"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = metadata(
        input_size=str(input_size),
        resize_mode=resize_mode,
        detections_per_img="2",
        exporter="tests/serve/centroid_model.py",
        backbone="centroid-test",
    )
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def save_centroid_model(path: Path, input_size: int, resize_mode: str) -> Path:
    """Write the model to ``path`` and return ``path``."""
    onnx.save(build_centroid_model(input_size, resize_mode), str(path))
    return path
