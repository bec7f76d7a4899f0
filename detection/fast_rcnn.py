"""Fast R-CNN on one stride-16 map of a transfer-learned backbone, from torchvision's R-CNN parts.

Pipeline: backbone map (stride 16, e.g. EfficientNet-Lite0 stage 3, 112 channels) ->
proposals -> RoI pooling of each proposal to a ``7 x 7`` grid (max pooling, as in the
Fast R-CNN paper; RoIAlign optional, ``detection.roi_pooler``) -> fc6 -> fc7 (each ReLU
and dropout) -> class softmax and class-specific box deltas.

Proposals come from a region proposal network on the same map (anchors of several sizes
and aspect ratios, objectness and box regression, NMS), or are precomputed per image
(the original Fast R-CNN setting, ``detection.proposals``): pass
``proposals=[[P_i, 4] per image]`` to ``forward``; a model built with
``proposal_source="precomputed"`` has no RPN and requires them.

Training (torchvision's ``RoIHeads``): ground-truth boxes join the proposals; a proposal
with IoU >= ``fg_iou_thresh`` (0.5) with a ground-truth box takes its class, one below it
is background; each image contributes ``batch_size_per_image`` RoIs, at most
``positive_fraction`` (25%) foreground. Losses: cross-entropy over the classes and smooth
L1 (beta 1/9) on the deltas of the true class, targets scaled by (10, 10, 5, 5).

Contract (torchvision's): in training ``model(images, targets)`` returns
``{"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}`` (the last
two only with the RPN); in eval ``model(images)`` returns one ``{"boxes": [K, 4] x1,y1,
x2,y2 in input pixels, "scores": [K], "labels": [K]}`` per image, labels in
``1..num_classes-1`` (0 is background).

Images reach the model already resized to ``size`` and normalised by the data pipeline,
so the internal transform gets mean 0 / std 1 and ``min_size = max_size = size``: its
resize is the identity on ``size x size`` images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from prodet.detection.backbones import Backbone
from prodet.detection.roi_pooler import RoIPooler

PROPOSAL_SOURCES: tuple[str, ...] = ("rpn", "precomputed")
DEFAULT_ANCHOR_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256)
DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)


class FCHead(nn.Module):
    """``[R, C, k, k]`` pooled RoIs -> ``[R, representation]``: fc6 and fc7, ReLU + dropout each.

    fc6 and fc7 are new layers (the backbone is a classifier without them): normal with std
    0.01, zero biases. The pooled maps of an ImageNet backbone have an rms near 10; He
    initialisation would carry that size through to logits of a few units and a first
    classification loss several times ``ln(num_classes)``, while std 0.01 starts near 0.3.
    """

    def __init__(self, in_features: int, representation: int, dropout: float) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation)
        self.fc7 = nn.Linear(representation, representation)
        self.dropout = nn.Dropout(dropout)
        for layer in (self.fc6, self.fc7):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, rois: Tensor) -> Tensor:
        x = self.dropout(torch.relu(self.fc6(rois.flatten(1))))
        return self.dropout(torch.relu(self.fc7(x)))


def build_predictor(representation: int, num_classes: int) -> FastRCNNPredictor:
    """Class scores ``[R, num_classes]`` and class-specific deltas ``[R, num_classes * 4]``.

    Initialised as in the Fast R-CNN paper: normal with std 0.01 (scores) and 0.001
    (deltas), zero biases, so training starts from near-uniform classes and the proposals.
    """
    predictor = FastRCNNPredictor(representation, num_classes)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    return predictor


class FastRCNN(GeneralizedRCNN):
    """``GeneralizedRCNN`` whose ``forward`` also takes precomputed proposals.

    ``rpn`` is ``None`` for a model built with ``proposal_source="precomputed"``.
    """

    def forward(
        self,
        images: list[Tensor] | Tensor,
        targets: list[dict[str, Tensor]] | None = None,
        proposals: list[Tensor] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses (training) or detections (eval); see the module docstring.

        Args:
            images: ``[B, 3, H, W]`` or ``B`` tensors ``[3, H, W]``, normalised.
            targets: training only; per image ``{"boxes": [N, 4] float x1,y1,x2,y2 input
                pixels, "labels": [N] int64 in 1..num_classes-1}``.
            proposals: optional, per image ``[P_i, 4]`` boxes x1,y1,x2,y2 in input pixels;
                when given, the RPN is skipped and contributes no losses.
        """
        if proposals is None:
            if self.rpn is None:
                raise ValueError(
                    "this Fast R-CNN was built with proposal_source='precomputed': pass "
                    "proposals=[[P, 4] boxes per image] (see detection.proposals)"
                )
            return super().forward(images, targets)
        if len(proposals) != len(images):
            raise ValueError(f"got {len(proposals)} proposal tensors for {len(images)} images")
        for index, boxes in enumerate(proposals):
            if boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(
                    f"proposals[{index}] has shape {tuple(boxes.shape)}; expected [P, 4] "
                    "x1,y1,x2,y2 boxes in input pixels"
                )
        if self.training and targets is None:
            raise ValueError("training needs targets: model(images, targets, proposals=...)")
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        image_list, targets = self.transform(images, targets)
        dtype = image_list.tensors.dtype
        resized = [
            resize_boxes(boxes.to(dtype), before, after)
            for boxes, before, after in zip(
                proposals, original_sizes, image_list.image_sizes, strict=True
            )
        ]
        features = self.backbone(image_list.tensors)
        detections, losses = self.roi_heads(features, resized, image_list.image_sizes, targets)
        if self.training:
            return losses
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


def _check_arguments(
    backbone: Backbone,
    num_classes: int,
    proposal_source: str,
    dropout: float,
    anchor_sizes: Sequence[int],
    aspect_ratios: Sequence[float],
) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
    if len(backbone.strides) != 1:
        raise ValueError(
            f"Fast R-CNN pools from one feature map, but the backbone returns "
            f"{len(backbone.strides)} (strides {backbone.strides}); build it with "
            "out_indices=(3,) for the stride-16 map"
        )
    if proposal_source not in PROPOSAL_SOURCES:
        raise ValueError(f"proposal_source={proposal_source!r}: use 'rpn' or 'precomputed'")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout}: must be in [0, 1)")
    if not anchor_sizes or min(anchor_sizes) <= 0:
        raise ValueError(f"anchor_sizes={anchor_sizes}: give positive sides in pixels")
    if not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"aspect_ratios={aspect_ratios}: give positive height/width ratios")


def build_fast_rcnn(
    *,
    backbone: Backbone,
    num_classes: int,
    size: int = 320,
    roi_op: str = "pool",
    roi_size: int = 7,
    representation: int = 1024,
    dropout: float = 0.5,
    proposal_source: str = "rpn",
    anchor_sizes: Sequence[int] = DEFAULT_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    rpn_pre_nms_train: int = 1000,
    rpn_post_nms_train: int = 500,
    rpn_pre_nms_test: int = 500,
    rpn_post_nms_test: int = 100,
    rpn_nms_thresh: float = 0.7,
    rpn_batch_size_per_image: int = 256,
    batch_size_per_image: int = 128,
    positive_fraction: float = 0.25,
    fg_iou_thresh: float = 0.5,
    score_thresh: float = 0.01,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
) -> FastRCNN:
    """Build a Fast R-CNN detector.

    Args:
        backbone: returns exactly one map (``build_backbone(..., out_indices=(3,))``, stride
            16); RoIs are pooled from it at scale ``1 / stride``.
        num_classes: including background (``len(dataset.classes)``).
        size: square input side in pixels.
        roi_op: ``"pool"`` (RoI max pooling) or ``"align"`` (RoIAlign).
        roi_size: side of the pooled grid.
        representation, dropout: width of fc6/fc7 and their dropout probability.
        proposal_source: ``"rpn"`` (trainable RPN; precomputed proposals still accepted by
            ``forward``) or ``"precomputed"`` (no RPN).
        anchor_sizes, aspect_ratios: RPN anchors at each map cell, sides in input pixels
            and height/width ratios (``len(sizes) * len(ratios)`` anchors per cell).
        rpn_*: proposals kept before/after NMS per image, NMS IoU, anchors sampled per
            image for the RPN loss (anchor IoU >= 0.7 positive, < 0.3 negative).
        batch_size_per_image, positive_fraction, fg_iou_thresh: RoI sampling for the head.
        score_thresh, nms_thresh, detections_per_img: per-class NMS of the detections.
    """
    _check_arguments(backbone, num_classes, proposal_source, dropout, anchor_sizes, aspect_ratios)
    channels = backbone.out_channels[0]
    rpn = None
    if proposal_source == "rpn":
        anchors = AnchorGenerator((tuple(anchor_sizes),), (tuple(aspect_ratios),))
        rpn = RegionProposalNetwork(
            anchors,
            RPNHead(channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7,
            bg_iou_thresh=0.3,
            batch_size_per_image=rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n={"training": rpn_pre_nms_train, "testing": rpn_pre_nms_test},
            post_nms_top_n={"training": rpn_post_nms_train, "testing": rpn_post_nms_test},
            nms_thresh=rpn_nms_thresh,
        )
    pooler = RoIPooler(
        backbone.feature_names[0],
        output_size=roi_size,
        spatial_scale=1.0 / backbone.strides[0],
        op=roi_op,
    )
    roi_heads = RoIHeads(
        pooler,
        FCHead(channels * roi_size * roi_size, representation, dropout),
        build_predictor(representation, num_classes),
        fg_iou_thresh=fg_iou_thresh,
        bg_iou_thresh=fg_iou_thresh,
        batch_size_per_image=batch_size_per_image,
        positive_fraction=positive_fraction,
        bbox_reg_weights=None,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
    transform = GeneralizedRCNNTransform(
        min_size=size,
        max_size=size,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        size_divisible=32,
    )
    return FastRCNN(backbone, rpn, roi_heads, transform)
