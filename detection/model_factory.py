"""Build a detector from a ``TrainConfig``: the one place that wires backbone and head.

Used by training (pretrained backbone weights), and by evaluation and export (weights
come from the checkpoint, so the backbone is built without loading any file).
"""

from __future__ import annotations

from torch import nn

from prodet.detection.backbones import DEFAULT_OUT_INDICES, Backbone, build_backbone
from prodet.detection.config import HEADS, TrainConfig


def _backbone_weights(config: TrainConfig, pretrained: bool) -> tuple[str | None, str | None]:
    if not pretrained or config.backbone_weights == "none":
        return None, None
    if config.backbone_weights == "default":
        return "default", None
    return "default", config.backbone_weights


def build_model(config: TrainConfig, num_classes: int, *, pretrained: bool = True) -> nn.Module:
    """The detector named by ``config.head`` on ``config.backbone``.

    Args:
        num_classes: including background (``len(dataset.classes)``).
        pretrained: load the backbone's ImageNet weights (training); False when a
            checkpoint's state dict will be loaded next.
    """
    if config.head not in HEADS:
        raise ValueError(f"head {config.head!r} is unknown; use --head ssd or --head fast_rcnn")
    weights, weights_path = _backbone_weights(config, pretrained)
    # SSD predicts on the stride-8/16/32 maps; Fast R-CNN pools RoIs from stride 16 only.
    backbone = build_backbone(
        config.backbone,
        weights=weights,
        weights_path=weights_path,
        out_indices=(3,) if config.head == "fast_rcnn" else DEFAULT_OUT_INDICES,
        freeze=config.freeze,
        frozen_bn=config.frozen_bn,
    )
    if config.head == "ssd":
        from prodet.detection.ssd import build_ssd

        s = config.ssd
        return build_ssd(
            backbone=backbone,
            num_classes=num_classes,
            size=config.size,
            extra_channels=s.extra_channels,
            fpn_channels=s.fpn_channels,
            min_scale=s.min_scale,
            max_scale=s.max_scale,
            score_thresh=s.score_thresh,
            nms_thresh=s.nms_thresh,
            detections_per_img=s.detections_per_img,
        )
    from prodet.detection.fast_rcnn import build_fast_rcnn

    f = config.fast_rcnn
    return build_fast_rcnn(
        backbone=backbone,
        num_classes=num_classes,
        size=config.size,
        roi_op=f.roi_op,
        roi_size=f.roi_size,
        representation=f.representation,
        dropout=f.dropout,
        anchor_sizes=f.anchor_sizes,
        aspect_ratios=f.aspect_ratios,
        rpn_pre_nms_train=f.rpn_pre_nms_train,
        rpn_post_nms_train=f.rpn_post_nms_train,
        rpn_pre_nms_test=f.rpn_pre_nms_test,
        rpn_post_nms_test=f.rpn_post_nms_test,
        rpn_nms_thresh=f.rpn_nms_thresh,
        rpn_batch_size_per_image=f.rpn_batch_size_per_image,
        batch_size_per_image=f.batch_size_per_image,
        positive_fraction=f.positive_fraction,
        fg_iou_thresh=f.fg_iou_thresh,
        score_thresh=f.score_thresh,
        nms_thresh=f.nms_thresh,
        detections_per_img=f.detections_per_img,
        proposal_source="precomputed" if f.proposals_file else "rpn",
    )


def find_backbone(model: nn.Module) -> Backbone:
    """The model's ``Backbone`` (for its mean/std and strides)."""
    for module in model.modules():
        if isinstance(module, Backbone):
            return module
    raise ValueError(f"{type(model).__name__} has no detection.backbones.Backbone inside")
