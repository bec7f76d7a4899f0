"""SSD on a transfer-learned backbone, composed from torchvision's own SSD parts.

``torchvision.models.detection.SSD`` supplies default-box matching, the MultiBox loss
with 3:1 hard negative mining, box decoding and class-wise NMS; this module supplies the
feature pyramid (backbone maps plus extra stride-2 layers) and the default boxes.

Contract (torchvision's): in training ``model(images, targets)`` returns
``{"bbox_regression", "classification"}`` losses; in eval ``model(images)`` returns one
``{"boxes": [K, 4] x1,y1,x2,y2 in input pixels, "scores": [K], "labels": [K]}`` per
image, labels in ``1..num_classes-1`` (0 is background).

Images reach the model already resized to ``size`` and normalised by the data pipeline,
so the internal transform gets mean 0 / std 1 and its resize is the identity.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDHead
from torchvision.ops import FeaturePyramidNetwork

from prodet.detection.backbones import Backbone

DEFAULT_ASPECT_RATIOS: tuple[tuple[int, ...], ...] = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))


def _extra_block(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 reduce then 3x3 stride-2: halves the map, as in SSD's extra feature layers."""
    block = nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 1, bias=False),
        nn.BatchNorm2d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, out_channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
    for m in block.modules():
        if isinstance(m, nn.Conv2d):  # He initialisation for ReLU layers
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return block


class SSDFeatures(nn.Module):
    """Backbone maps followed by extra layers: the multi-scale maps SSD predicts on.

    Args:
        backbone: returns an ``OrderedDict`` of maps ``[B, C_i, H/s_i, W/s_i]`` and has
            ``out_channels: list[int]``.
        extra_channels: output channels of each extra stride-2 block, appended after the
            backbone's last map.
        fpn_channels: 0 predicts on the backbone's maps as they are (the SSD paper). N > 0
            first passes them through torchvision's ``FeaturePyramidNetwork`` (N channels
            each): the top-down path gives the fine maps, where small objects are found,
            the semantics of the coarse ones (an early stride-8 map of a mobile backbone
            has few channels and little meaning of its own). The extra layers still grow
            from the backbone's last map.

    Returns (forward): ``OrderedDict`` ``"0".."n-1"`` of ``[B, C, h, w]`` maps, finest first.
    """

    def __init__(
        self,
        backbone: Backbone,
        extra_channels: tuple[int, ...] = (256, 256, 128),
        fpn_channels: int = 0,
    ):
        super().__init__()
        if fpn_channels < 0:
            raise ValueError(f"fpn_channels must be >= 0 (0: no FPN), got {fpn_channels}")
        self.body = backbone
        backbone_channels = list(backbone.out_channels)
        self.fpn = FeaturePyramidNetwork(backbone_channels, fpn_channels) if fpn_channels else None
        channels = [fpn_channels] * len(backbone_channels) if fpn_channels else backbone_channels
        last = backbone_channels[-1]
        extras = []
        for out in extra_channels:
            extras.append(_extra_block(last, max(out // 2, 64), out))
            channels.append(out)
            last = out
        self.extras = nn.ModuleList(extras)
        self.out_channels = channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        found = self.body(x)
        last = next(reversed(found.values()))
        maps = list((self.fpn(found) if self.fpn is not None else found).values())
        for block in self.extras:
            last = block(last)
            maps.append(last)
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


def default_scales(num_maps: int, min_scale: float, max_scale: float) -> list[float]:
    """Linearly spaced box scales (fraction of the input side), plus one extra for the
    last map's ``sqrt(s_k * s_k+1)`` box, as ``DefaultBoxGenerator`` expects."""
    if not 0 < min_scale < max_scale <= 1.5:
        raise ValueError(f"need 0 < min_scale < max_scale <= 1.5, got {min_scale}, {max_scale}")
    step = (max_scale - min_scale) / max(num_maps - 1, 1)
    return [min_scale + step * k for k in range(num_maps)] + [1.0]


def _init_head(head: SSDHead, num_classes: int, background_prior: float = 0.99) -> None:
    """Small-normal weights (std 0.01 boxes, 0.001 classes) and a background prior.

    torchvision's Xavier default meets the backbone's unnormalised maps and starts with
    logits of several units: hard negative mining then picks the most confidently wrong
    anchors and the first classification loss is above 30. With weights of std 0.01 and
    the background bias set so that every anchor starts at ``p(background) =
    background_prior`` (the RetinaNet prior, here for softmax), mined negatives start
    near zero loss and the gradient comes from the positives.
    """
    for conv in head.regression_head.module_list:
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
    for conv in head.classification_head.module_list:
        nn.init.normal_(conv.weight, std=0.001)
        nn.init.zeros_(conv.bias)
    prior = math.log(background_prior * (num_classes - 1) / (1.0 - background_prior))
    for conv in head.classification_head.module_list:
        with torch.no_grad():  # channels are laid out [anchor, class] per location
            conv.bias.view(-1, num_classes)[:, 0] = prior


def build_ssd(
    *,
    backbone: Backbone,
    num_classes: int,
    size: int = 320,
    extra_channels: tuple[int, ...] = (256, 256, 128),
    fpn_channels: int = 0,
    min_scale: float = 0.07,
    max_scale: float = 0.9,
    aspect_ratios: tuple[tuple[int, ...], ...] | None = None,
    score_thresh: float = 0.01,
    nms_thresh: float = 0.45,
    detections_per_img: int = 100,
    topk_candidates: int = 400,
) -> SSD:
    """Build an SSD detector.

    Args:
        backbone: multi-scale feature extractor (see ``SSDFeatures``).
        num_classes: including background (``len(dataset.classes)``).
        size: square input side in pixels.
        min_scale, max_scale: default-box scales of the finest and coarsest maps, as a
            fraction of ``size`` (the SSD paper uses 0.2..0.9; small products on shelves
            want a smaller first scale).
        aspect_ratios: per map, the extra ratios (each adds ``r`` and ``1/r`` boxes).
        fpn_channels: see ``SSDFeatures`` (0: no feature pyramid).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
    features = SSDFeatures(backbone, extra_channels, fpn_channels)
    n_maps = len(features.out_channels)
    ratios = aspect_ratios or DEFAULT_ASPECT_RATIOS[:n_maps]
    if len(ratios) != n_maps:
        raise ValueError(f"aspect_ratios has {len(ratios)} entries for {n_maps} feature maps")
    anchors = DefaultBoxGenerator(
        [list(r) for r in ratios], scales=default_scales(n_maps, min_scale, max_scale)
    )
    head = SSDHead(features.out_channels, anchors.num_anchors_per_location(), num_classes)
    _init_head(head, num_classes)
    return SSD(
        features,
        anchors,
        (size, size),
        num_classes,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        head=head,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        topk_candidates=topk_candidates,
    )
