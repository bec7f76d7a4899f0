"""Fast R-CNN's inference path as one batch-friendly module for ONNX export.

It reuses the trained parts of a ``detection.fast_rcnn.FastRCNN`` (backbone, RPN head,
RoI pooling, fc6/fc7 and the predictor) and replaces torchvision's per-image loops, whose
traced graphs break when the batch size changes (a ``Split`` of the batch) or when an
image has no detections (``ReduceMax`` over an empty tensor), with whole-batch steps:

1. RPN on the stride-16 map: objectness ``[N, A]`` and deltas ``[N, A, 4]`` for the
   constant anchors; the ``rpn_pre_nms_top_n`` best per image are decoded, clipped to
   ``[0, S]``, and boxes with a side under ``rpn.min_size`` are left out;
2. NMS on them for the whole batch (ONNX ``NonMaxSuppression``, one class), the kept ones
   scattered into a dense ``[N, pre]`` tensor whose top ``P = rpn_post_nms_top_n`` per
   image are the proposals ``[N, P, 4]``, cut to the batch's largest count of kept ones
   (the head's cost is per proposal, and torchvision's head sees only the kept ones); a
   padding proposal (an image with fewer) is a zero box with a ``valid`` flag of 0;
3. RoI pooling of the ``N * P`` proposals (``[N * P, 5]`` rows ``batch, x1, y1, x2, y2``;
   ONNX ``MaxRoiPool``, or ``RoiAlign`` for ``roi_op="align"``), fc6, fc7, predictor;
4. per-class decoding (weights 10, 10, 5, 5), clipping, softmax; background, padding
   proposals and boxes with a side under 0.01 px get score 0;
5. class-aware NMS as a batch of ``N * (C - 1)`` one-class problems (each image and
   class has its own boxes), then the top ``detections_per_img`` per image, padded.

The result equals ``FastRCNN.forward`` in eval mode up to ties and float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from prodet.detection.fast_rcnn import FastRCNN
from prodet.export.graph_ops import (
    PaddedDetections,
    box_sides_at_least,
    clip_to_input,
    decode_boxes,
    scatter_selected,
    top_detections,
)
from prodet.export.nms_op import non_max_suppression

# torchvision's RoIHeads drops detections with a side below this many pixels.
MIN_DETECTION_SIDE = 1e-2


def rpn_anchors(model: FastRCNN, padded_size: int, size: int) -> Tensor:
    """The RPN's anchors for a ``padded_size`` square input batch: float32 ``[A, 4]``
    ``x1, y1, x2, y2`` in input pixels, in the order of the RPN head's flattened outputs."""
    with torch.no_grad():
        images = torch.zeros(1, 3, padded_size, padded_size)
        features = list(model.backbone(images).values())
        return model.rpn.anchor_generator(ImageList(images, [(size, size)]), features)[0]


def _box_coder_weights(weights: Sequence[float], name: str) -> tuple[float, float, float, float]:
    """A ``BoxCoder``'s ``(wx, wy, ww, wh)`` as Python floats."""
    values = tuple(float(w) for w in weights)
    if len(values) != 4:
        raise ValueError(f"{name} box coder weights must be (wx, wy, ww, wh), got {values}")
    return values


class FastRCNNExport(nn.Module):
    """``images [N, 3, S, S]`` (normalised) -> ``PaddedDetections`` (see the module doc).

    Args:
        model: a trained Fast R-CNN with an RPN (precomputed proposals cannot be exported:
            the graph's only input is the image).
        size: the square input side ``S`` the model was trained at.
        half: run the backbone, RPN head, fc6/fc7 and predictor in float16 (for GPUs);
            converts those modules of ``model`` in place, so pass a copy. Decoding, NMS
            and RoI pooling stay float32.
    """

    anchors: Tensor  # registered as a buffer in __init__

    def __init__(self, model: FastRCNN, size: int, *, half: bool = False) -> None:
        super().__init__()
        if model.rpn is None:
            raise ValueError(
                "this Fast R-CNN was built with proposal_source='precomputed'; only a model "
                "with its RPN can be exported (the ONNX graph takes images only)"
            )
        rpn, heads = model.rpn, model.roi_heads
        if not 0.0 <= heads.score_thresh < 1.0:
            raise ValueError(f"score_thresh must be in [0, 1) to export, got {heads.score_thresh}")
        divisor = int(model.transform.size_divisible)
        self.size = size
        self.padded_size = int(math.ceil(size / divisor) * divisor)
        anchors = rpn_anchors(model, self.padded_size, size)
        self.network_dtype = torch.float16 if half else torch.float32
        self.backbone = model.backbone.to(self.network_dtype)
        self.feature_name = heads.box_roi_pool.feature_name
        self.rpn_head = rpn.head.to(self.network_dtype)
        self.anchors_per_cell = int(rpn.anchor_generator.num_anchors_per_location()[0])
        self.register_buffer("anchors", anchors, persistent=False)
        self.rpn_weights = _box_coder_weights(rpn.box_coder.weights, "RPN")
        self.rpn_pre_nms = min(int(rpn._pre_nms_top_n["testing"]), int(anchors.shape[0]))
        self.num_proposals = min(int(rpn._post_nms_top_n["testing"]), self.rpn_pre_nms)
        self.rpn_nms_thresh = float(rpn.nms_thresh)
        self.rpn_min_size = float(rpn.min_size)
        self.rpn_score_thresh = float(rpn.score_thresh)
        self.roi_op = heads.box_roi_pool.op
        self.box_head = heads.box_head.to(self.network_dtype)
        self.box_predictor = heads.box_predictor.to(self.network_dtype)
        self.num_classes = int(heads.box_predictor.cls_score.out_features) - 1
        self.weights = _box_coder_weights(heads.box_coder.weights, "RoI heads")
        self.xform_clip = float(heads.box_coder.bbox_xform_clip)
        self.score_thresh = float(heads.score_thresh)
        self.nms_thresh = float(heads.nms_thresh)
        self.detections_per_img = int(heads.detections_per_img)
        per_class = math.ceil(self.detections_per_img / self.num_classes)
        self.min_slots = min(self.num_proposals, per_class)

    def proposals(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        """RPN proposals ``[N, P', 4]`` (input pixels, zero on padding) and ``valid [N, P']``,
        ``min_slots <= P' <= P``: the most valid proposals of any image in the batch."""
        (logits,), (deltas,) = self.rpn_head([feature])
        logits, deltas = logits.float(), deltas.float()
        objectness = logits.permute(0, 2, 3, 1).flatten(1)  # [N, H * W * A]
        deltas = (
            deltas.unflatten(1, (self.anchors_per_cell, 4)).permute(0, 3, 4, 1, 2).flatten(1, 3)
        )
        top_logits, index = objectness.topk(self.rpn_pre_nms, dim=1)
        top_deltas = deltas.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        boxes = decode_boxes(top_deltas, self.anchors[index], self.rpn_weights)
        boxes = clip_to_input(boxes, self.size)
        probability = torch.sigmoid(top_logits)
        usable = box_sides_at_least(boxes, self.rpn_min_size) & (
            probability >= self.rpn_score_thresh
        )
        # Unusable boxes score -1: below NMS's threshold of -0.5, which every probability clears.
        scores = torch.where(usable, probability, -1.0)
        selected = non_max_suppression(
            boxes,
            scores.unsqueeze(1),
            max_output_per_class=self.num_proposals,
            iou_threshold=self.rpn_nms_thresh,
            score_threshold=-0.5,
        )
        dense = scatter_selected(selected, scores.unsqueeze(1), fill=-1.0).squeeze(1)
        kept, order = dense.topk(self.num_proposals, dim=1)
        # Keep only as many slots as the batch's fullest image fills (the RoI head's cost is
        # per slot), but at least ``min_slots`` so that the final top-D has enough
        # candidates. Valid proposals form a prefix of each row, so the longest prefix is
        # the number of columns with any valid entry: sums only, no ReduceMax.
        slots = ((kept > -0.5).sum(0) > 0).sum().clamp(min=self.min_slots)
        # A 0-d tensor end keeps the size dynamic in the traced graph; torch's stubs only
        # admit Python numbers here.
        kept_slots = torch.arange(slots, device=kept.device)  # type: ignore[call-overload]
        kept, order = kept.index_select(1, kept_slots), order.index_select(1, kept_slots)
        valid = kept > -0.5
        proposals = boxes.gather(1, order.unsqueeze(-1).expand(-1, -1, 4))
        return proposals * valid.unsqueeze(-1).to(proposals.dtype), valid

    def forward(self, images: Tensor) -> PaddedDetections:
        """Detect objects in ``images`` float32 ``[N, 3, S, S]``, normalised."""
        if self.padded_size != self.size:
            pad = self.padded_size - self.size
            images = F.pad(images, (0, pad, 0, pad))
        feature = self.backbone(images.to(self.network_dtype))[self.feature_name]
        proposals, valid = self.proposals(feature)
        feature = feature.float()
        # Batch index of every RoI, from a cumulative sum: no arange over a traced size.
        batch_index = torch.ones_like(proposals[:, :, :1]).cumsum(0) - 1.0
        rois = torch.cat([batch_index, proposals], dim=2).flatten(0, 1)
        pooled = self.roi_op(feature, rois)
        logits, regression = self.box_predictor(self.box_head(pooled.to(self.network_dtype)))
        logits, regression = logits.float(), regression.float()
        batch, classes = proposals.shape[0], self.num_classes + 1
        scores = torch.softmax(logits, dim=-1).reshape(batch, -1, classes)[:, :, 1:]
        regression = regression.reshape(batch, -1, classes, 4)[:, :, 1:]
        boxes = decode_boxes(regression, proposals.unsqueeze(2), self.weights, self.xform_clip)
        boxes = clip_to_input(boxes, self.size)  # [N, P, C, 4]
        keep = valid.unsqueeze(-1) & box_sides_at_least(boxes, MIN_DETECTION_SIDE)
        scores = scores * keep.to(scores.dtype)
        class_scores = scores.permute(0, 2, 1)  # [N, C, P]
        class_boxes = boxes.permute(0, 2, 1, 3)  # [N, C, P, 4]
        selected = non_max_suppression(
            class_boxes.flatten(0, 1),
            class_scores.flatten(0, 1).unsqueeze(1),
            max_output_per_class=self.detections_per_img,
            iou_threshold=self.nms_thresh,
            score_threshold=self.score_thresh,
        )
        dense = scatter_selected(selected, class_scores.flatten(0, 1).unsqueeze(1))
        return top_detections(
            dense.reshape_as(class_scores),
            class_boxes,
            detections_per_img=self.detections_per_img,
            num_classes=self.num_classes,
            num_boxes=self.num_proposals,
        )
