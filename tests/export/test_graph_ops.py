"""The loop-free building blocks: NMS op (eager and in onnxruntime), decoding, padded top-D."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder

from prodet.export.graph_ops import (
    decode_boxes,
    keep_top_per_class,
    scatter_selected,
    top_detections,
)
from prodet.export.nms_op import non_max_suppression

# Image 0: boxes 0 and 1 overlap with IoU 100 / 121 = 0.826, box 2 is apart.
BOXES = torch.tensor(
    [
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]],
        [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 10.0]],
    ]
)
# [B=2, C=2, M=3]
SCORES = torch.tensor(
    [
        [[0.9, 0.8, 0.3], [0.2, 0.6, 0.05]],
        [[0.5, 0.5, 0.7], [0.1, 0.1, 0.1]],
    ]
)


class _Nms(nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return non_max_suppression(
            boxes, scores, max_output_per_class=2, iou_threshold=0.5, score_threshold=0.1
        )


def _onnx_nms(boxes: torch.Tensor, scores: torch.Tensor) -> np.ndarray:
    buffer = io.BytesIO()
    torch.onnx.export(
        _Nms(),
        (BOXES, SCORES),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=["boxes", "scores"],
        dynamic_axes={"boxes": {0: "b", 1: "m"}, "scores": {0: "b", 2: "m"}},
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})[0]


def _rows(selected: np.ndarray | torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in np.asarray(selected)}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_nms_selects_per_image_and_class_alike_in_torch_and_onnxruntime():
    # Image 0 class 0: box 1 overlaps box 0 (IoU 0.83) and goes; box 2 stays.
    # Image 0 class 1: box 1 (0.6) then box 0 (0.2) is suppressed; box 2 scores 0.05 < 0.1.
    # Image 1 class 0: box 2 (0.7) suppresses box 0 (identical); box 1 stays: 2 kept.
    # Image 1 class 1: every score is exactly 0.1, not above the threshold: nothing.
    expected = {(0, 0, 0), (0, 0, 2), (0, 1, 1), (1, 0, 2), (1, 0, 1)}
    eager = _Nms()(BOXES, SCORES)
    assert eager.dtype == torch.int64 and eager.shape == (5, 3)
    assert _rows(eager) == expected
    assert _rows(_onnx_nms(BOXES, SCORES)) == expected
    empty = _onnx_nms(BOXES[:, :0], SCORES[:, :, :0])
    assert empty.shape == (0, 3)
    assert _onnx_nms(BOXES, SCORES * 0).shape == (0, 3)


def test_dense_scores_and_padded_top_detections_by_hand():
    scores = SCORES.clone()
    selected = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 0, 2]])
    dense = scatter_selected(selected, scores)
    expected = torch.zeros_like(scores)
    expected[0, 0, 0], expected[0, 1, 1], expected[1, 0, 2] = 0.9, 0.6, 0.7
    assert torch.equal(dense, expected)
    out = top_detections(dense, BOXES, detections_per_img=8, num_classes=2, num_boxes=3)
    # 2 classes x 3 boxes = 6 candidates: rows 6 and 7 are padding added after top-k.
    assert out.scores.shape == (2, 8) and out.boxes.shape == (2, 8, 4)
    assert out.num_detections.tolist() == [2, 1]
    assert torch.allclose(out.scores[0, :2], torch.tensor([0.9, 0.6]))
    assert out.labels[0, :2].tolist() == [1, 2] and out.labels[1, :1].tolist() == [1]
    assert torch.equal(out.boxes[0, 1], BOXES[0, 1]) and torch.equal(out.boxes[1, 0], BOXES[1, 2])
    assert not out.boxes[0, 2:].any() and not out.labels[1, 1:].any()
    assert not out.scores[1, 1:].any()
    none = scatter_selected(torch.zeros((0, 3), dtype=torch.int64), scores)
    assert not top_detections(none, BOXES, detections_per_img=4, num_classes=2, num_boxes=3)[
        3
    ].any()


def test_per_class_boxes_are_gathered_by_class():
    boxes = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    dense = torch.zeros(1, 2, 3)
    dense[0, 1, 2] = 0.5
    out = top_detections(dense, boxes, detections_per_img=2, num_classes=2, num_boxes=3)
    assert torch.equal(out.boxes[0, 0], boxes[0, 1, 2]) and out.labels[0].tolist() == [2, 0]


def test_keep_top_per_class_zeroes_the_rest():
    kept = keep_top_per_class(SCORES, 1, num_boxes=3)
    assert torch.equal((kept > 0).sum(-1), torch.ones(2, 2, dtype=torch.int64))
    assert kept[0, 0, 0] == 0.9 and kept[0, 1, 1] == 0.6
    assert keep_top_per_class(SCORES, 3, num_boxes=3) is SCORES


def test_decoding_matches_torchvisions_box_coder():
    torch.manual_seed(0)
    anchors = torch.rand(50, 2) * 100
    anchors = torch.cat([anchors, anchors + torch.rand(50, 2) * 50 + 1], 1)
    deltas = torch.randn(50, 4) * torch.tensor([5.0, 5.0, 20.0, 20.0])  # some hit the clip
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    expected = coder.decode_single(deltas, anchors)
    assert torch.allclose(decode_boxes(deltas, anchors, coder.weights), expected, atol=1e-4)
