"""Contract 3 in one module: metadata written and read back, the graph signature, the
padded outputs split per image, and no torch, onnx or onnxruntime needed to import it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from prodet.export.onnx_contract import (
    ModelContractError,
    ModelMetadata,
    check_signature,
    metadata_props,
    parse_metadata,
    unpad,
)

METADATA = ModelMetadata(
    classes=("__background__", "bottle", "can"),
    input_size=64,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize_mode="letterbox",
    detections_per_img=3,
    score_thresh=0.05,
    head="ssd",
    backbone="efficientnet_lite0",
    val_map=0.5,
    precision="fp32",
    dataset_hash="ab" * 32,
    exporter="torch 2.14.0 torch.onnx.export(dynamo=False)",
    opset="17",
    exported_at="2025-01-01T00:00:00Z",
)
# Format 1 exactly as the exporter has always written it: existing files must keep loading.
PROPS = {
    "prodet_format": "1",
    "classes": '["__background__", "bottle", "can"]',
    "input_size": "64",
    "mean": "[0.485, 0.456, 0.406]",
    "std": "[0.229, 0.224, 0.225]",
    "resize_mode": "letterbox",
    "box_format": "xyxy_pixels_model_input",
    "head": "ssd",
    "backbone": "efficientnet_lite0",
    "dataset_hash": "ab" * 32,
    "val_map": "0.5",
    "exporter": "torch 2.14.0 torch.onnx.export(dynamo=False)",
    "opset": "17",
    "exported_at": "2025-01-01T00:00:00Z",
    "detections_per_img": "3",
    "score_thresh": "0.05",
    "precision": "fp32",
}


def test_metadata_is_written_as_format_1_strings_in_order() -> None:
    props = metadata_props(METADATA, {"proposals": "300"})
    assert list(props.items()) == [*PROPS.items(), ("proposals", "300")]


def test_metadata_round_trips() -> None:
    assert parse_metadata(PROPS) == METADATA
    unvalidated = replace(METADATA, val_map=None)
    assert metadata_props(unvalidated)["val_map"] == ""
    assert parse_metadata(metadata_props(unvalidated)) == unvalidated


def test_an_unknown_precision_is_not_written() -> None:
    with pytest.raises(ModelContractError, match="one of fp32, fp16, int8, got 'fp8'"):
        metadata_props(replace(METADATA, precision="fp8"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"classes": None}, "lacks 'classes'"),
        ({"prodet_format": "2"}, "format '1'"),
        ({"classes": '["bottle", "can"]'}, "__background__"),
        ({"classes": '["__background__", "a", "a"]'}, "distinct"),
        ({"classes": "bottle,can"}, "not JSON"),
        ({"input_size": "big"}, "must be int"),
        ({"resize_mode": "crop"}, "stretch, letterbox"),
        ({"std": "[0.2, 0, 0.2]"}, "positive"),
        ({"mean": "[0.5, 0.5]"}, "3 numbers"),
        ({"box_format": "cxcywh"}, "xyxy_pixels_model_input"),
        ({"score_thresh": "1.5"}, "[0, 1]"),
    ],
)
def test_bad_metadata_is_named(overrides: dict[str, str | None], message: str) -> None:
    props = {k: v for k, v in {**PROPS, **overrides}.items() if v is not None}
    with pytest.raises(ModelContractError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_metadata(props)


def _node(name: str, type_: str, shape: list[int | str]) -> SimpleNamespace:
    return SimpleNamespace(name=name, type=type_, shape=shape)


OUTPUTS = [
    _node("boxes", "tensor(float)", ["batch", 3, 4]),
    _node("scores", "tensor(float)", ["batch", 3]),
    _node("labels", "tensor(int64)", ["batch", 3]),
    _node("num_detections", "tensor(int64)", ["batch"]),
]


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ([_node("input", "tensor(float)", ["batch", 3, 64, 64])], OUTPUTS, "one input 'images'"),
        ([_node("images", "tensor(float16)", ["batch", 3, 64, 64])], OUTPUTS, "must be float32"),
        ([_node("images", "tensor(float)", [1, 3, 32, 32])], OUTPUTS, "input_size=64"),
        ([_node("images", "tensor(float)", [1, 3, 64, 64])], OUTPUTS[1:], "lacks output 'boxes'"),
        (
            [_node("images", "tensor(float)", [1, 3, 64, 64])],
            [*OUTPUTS[:2], _node("labels", "tensor(float)", ["batch", 3]), OUTPUTS[3]],
            "output 'labels' must be tensor\\(int64\\)",
        ),
    ],
)
def test_signature_faults_are_named(
    inputs: list[SimpleNamespace], outputs: list[SimpleNamespace], message: str
) -> None:
    check_signature([_node("images", "tensor(float)", ["batch", 3, 64, 64])], OUTPUTS, 64)
    with pytest.raises(ModelContractError, match=message):
        check_signature(inputs, outputs, 64)


def _padded() -> list[np.ndarray]:
    """Two images, D = 3: the first with two detections, the second with none."""
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, :2] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    scores = np.array([[0.9, 0.4, 0.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([[2, 1, 0], [0, 0, 0]], np.int64)
    return [boxes, scores, labels, np.array([2, 0], np.int64)]


def test_unpad_keeps_each_images_valid_rows() -> None:
    first, second = unpad(_padded(), 2, detections_per_img=3, num_classes=3)
    np.testing.assert_array_equal(first.boxes, [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(first.scores, np.float32([0.9, 0.4]))
    assert first.labels.tolist() == [2, 1] and first.labels.dtype == np.int64
    assert len(second) == 0 and second.boxes.shape == (0, 4)


def _broken(fault: str) -> list[np.ndarray]:
    boxes, scores, labels, counts = _padded()
    if fault == "count":
        counts[1] = 4
    elif fault == "padding":
        scores[1, 0] = 0.2
    elif fault == "label":
        labels[0, 0] = 3
    elif fault == "shape":
        labels = labels[:, :2]
    return [boxes, scores, labels, counts]


@pytest.mark.parametrize(
    ("fault", "batch", "per_img", "message"),
    [
        ("count", 2, 3, r"image 1: num_detections 4 outside \[0, 3\]"),
        ("padding", 2, 3, "image 1: padding rows after row 0 are not all zero"),
        ("label", 2, 3, r"labels of valid rows must be in \[1, 2\], got \[1, 3\]"),
        ("shape", 2, 3, r"labels \(2, 2\)"),
        ("none", 3, 3, r"outputs for 3 images"),
        ("none", 2, 2, "3 output rows exceed detections_per_img"),
    ],
)
def test_output_faults_are_named(fault: str, batch: int, per_img: int, message: str) -> None:
    with pytest.raises(ModelContractError, match=message):
        unpad(_broken(fault), batch, detections_per_img=per_img, num_classes=3)


def test_importing_the_contract_needs_only_numpy(tmp_path: Path) -> None:
    code = (
        "import sys, prodet.export.onnx_contract\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'onnx', 'onnxruntime')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
