"""SSD's inference path as one batch-friendly module for ONNX export (Contract 3's outputs).

It reuses the trained parts of a ``torchvision.models.detection.SSD`` (feature extractor,
head, box coder weights, thresholds) and replaces the per-image Python loop of
``SSD.postprocess_detections`` with whole-batch tensor steps:

1. ``[N, A, 4]`` box deltas and ``[N, A, C]`` logits from the head;
2. decode against the default boxes (a constant: the input size is fixed), clip to
   ``[0, S]``, softmax;
3. per image and object class, keep the ``topk_candidates`` best scores (SSD's pre-NMS
   filter), then class-aware NMS for the whole batch (ONNX ``NonMaxSuppression``, score
   ``> score_thresh``, at most ``detections_per_img`` per class);
4. scatter the kept scores into a dense ``[N, C - 1, A]`` tensor and take the top
   ``detections_per_img`` per image, padded with zero rows.

The result equals ``SSD.forward`` in eval mode up to ties and float rounding (tests and
the export's parity gate check this).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD

from prodet.export.graph_ops import (
    PaddedDetections,
    clip_to_input,
    decode_boxes,
    keep_top_per_class,
    scatter_selected,
    top_detections,
)
from prodet.export.nms_op import non_max_suppression


def default_boxes(model: SSD, size: int) -> Tensor:
    """SSD's default boxes for a ``size x size`` input: float32 ``[A, 4]`` ``x1, y1, x2, y2``
    in input pixels, in the order of the head's outputs."""
    with torch.no_grad():
        images = torch.zeros(1, 3, size, size)
        features = list(model.backbone(images).values())
        return model.anchor_generator(ImageList(images, [(size, size)]), features)[0]


class SSDExport(nn.Module):
    """``images [N, 3, S, S]`` (normalised) -> ``PaddedDetections`` (see the module doc).

    Args:
        model: a trained SSD whose internal transform is the identity (``detection.ssd``).
        size: the square input side ``S`` the model was trained at.
        half: run the feature extractor and head in float16 (for GPUs); converts those
            modules of ``model`` in place, so pass a copy. Decoding and NMS stay float32.
    """

    anchors: Tensor  # registered as a buffer in __init__

    def __init__(self, model: SSD, size: int, *, half: bool = False) -> None:
        super().__init__()
        if not 0.0 <= model.score_thresh < 1.0:
            raise ValueError(
                f"SSD score_thresh must be in [0, 1) to export, got {model.score_thresh}"
            )
        anchors = default_boxes(model, size)
        self.network_dtype = torch.float16 if half else torch.float32
        self.backbone = model.backbone.to(self.network_dtype)
        self.head = model.head.to(self.network_dtype)
        self.size = size
        self.register_buffer("anchors", anchors, persistent=False)
        self.num_boxes = int(anchors.shape[0])
        self.num_classes = int(model.head.classification_head.num_columns) - 1
        weights = tuple(float(w) for w in model.box_coder.weights)
        if len(weights) != 4:
            raise ValueError(f"SSD box coder weights must be (wx, wy, ww, wh), got {weights}")
        self.weights = weights
        self.xform_clip = float(model.box_coder.bbox_xform_clip)
        self.score_thresh = float(model.score_thresh)
        self.nms_thresh = float(model.nms_thresh)
        self.topk_candidates = int(model.topk_candidates)
        self.detections_per_img = int(model.detections_per_img)

    def forward(self, images: Tensor) -> PaddedDetections:
        """Detect objects in ``images`` float32 ``[N, 3, S, S]``, normalised."""
        features = list(self.backbone(images.to(self.network_dtype)).values())
        head = self.head(features)
        deltas, logits = head["bbox_regression"].float(), head["cls_logits"].float()
        boxes = decode_boxes(deltas, self.anchors, self.weights, self.xform_clip)
        boxes = clip_to_input(boxes, self.size)
        scores = torch.softmax(logits, dim=-1)[:, :, 1:].transpose(1, 2)
        scores = keep_top_per_class(scores, self.topk_candidates, self.num_boxes)
        selected = non_max_suppression(
            boxes,
            scores,
            max_output_per_class=self.detections_per_img,
            iou_threshold=self.nms_thresh,
            score_threshold=self.score_thresh,
        )
        dense = scatter_selected(selected, scores)
        return top_detections(
            dense,
            boxes,
            detections_per_img=self.detections_per_img,
            num_classes=self.num_classes,
            num_boxes=self.num_boxes,
        )
