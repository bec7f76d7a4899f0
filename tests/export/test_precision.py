"""fp16 and int8 exports: the lower precision is where it should be, and the mAP change
against fp32 is measured and recorded instead of the strict gate."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto

from prodet.export.ort_runner import open_session, run_batches
from prodet.export.pipeline import ExportOptions, export_checkpoint
from tests.export.images import split_images


@pytest.mark.parametrize(
    ("head", "precision"), [("ssd", "int8"), ("fast_rcnn", "fp16"), ("fast_rcnn", "int8")]
)
def test_lower_precision_exports_record_their_map_change(
    checkpoints, tiny_data, tmp_path, head, precision
):
    options = ExportOptions(
        precision=precision, calibration=tiny_data, calibration_images=16, threads=1
    )
    result = export_checkpoint(checkpoints[head], tmp_path / "model.onnx", options)
    assert result.parity.passed  # the fp32 graph it came from passed the strict gate
    assert set(result.maps) == {"fp32", precision}
    props = result.metadata
    assert props["precision"] == precision
    change = result.maps[precision] - result.maps["fp32"]
    assert float(props["val_map_change"]) == pytest.approx(change, abs=1e-6)
    assert abs(change) < 0.05

    graph = onnx.load(str(result.path))
    onnx.checker.check_model(graph, full_check=True)
    ops = {node.op_type for node in graph.graph.node}
    if precision == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    else:
        kinds = {t.data_type for t in graph.graph.initializer if t.name.endswith("weight")}
        assert TensorProto.FLOAT16 in kinds
    inputs = graph.graph.input[0].type.tensor_type.elem_type
    outputs = [o.type.tensor_type.elem_type for o in graph.graph.output]
    assert inputs == TensorProto.FLOAT
    assert outputs == [TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT64]

    spec = {
        "size": int(props["input_size"]),
        "mean": json.loads(props["mean"]),
        "std": json.loads(props["std"]),
        "resize_mode": props["resize_mode"],
    }
    images = split_images(tiny_data, "test", spec, 3)[0].numpy()
    session = open_session(result.path, threads=1)
    per_image = run_batches(session, images, 1)
    assert [len(d) for d in run_batches(session, images, 3)] == [len(d) for d in per_image]
