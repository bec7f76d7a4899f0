"""Loop-free tensor steps shared by the export modules: box decoding and padded top-D output.

Every function works on a whole batch with shapes that do not depend on the data, so a
traced graph is right for any batch size and for images with no detections. Boxes are
``x1, y1, x2, y2`` in pixels of the ``S x S`` model input.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# torchvision's BoxCoder default: exp() is never given more than log(1000 / 16).
DEFAULT_XFORM_CLIP = math.log(1000.0 / 16)


class PaddedDetections(NamedTuple):
    """Contract 3's outputs for a batch of ``B`` images and ``D`` rows per image.

    Attributes:
        boxes: float32 ``[B, D, 4]``, ``x1, y1, x2, y2`` in model-input pixels.
        scores: float32 ``[B, D]``, descending per image.
        labels: int64 ``[B, D]``, class indices (never 0 on valid rows).
        num_detections: int64 ``[B]``; rows at and after it are all zero.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    num_detections: Tensor


def decode_boxes(
    deltas: Tensor,
    references: Tensor,
    weights: tuple[float, float, float, float],
    xform_clip: float = DEFAULT_XFORM_CLIP,
) -> Tensor:
    """Apply regression ``deltas`` to ``references``, exactly as torchvision's ``BoxCoder``.

    Args:
        deltas: ``[..., 4]`` encoded ``(dx, dy, dw, dh)``, scaled by ``weights``.
        references: ``[..., 4]`` anchors or proposals ``x1, y1, x2, y2``, broadcastable
            against ``deltas``.
        weights: ``(wx, wy, ww, wh)``, e.g. ``(10, 10, 5, 5)`` for SSD and RoI heads.
        xform_clip: upper bound of ``dw / ww`` and ``dh / wh`` before ``exp``.

    Returns:
        ``[..., 4]`` boxes ``x1, y1, x2, y2``.
    """
    widths = references[..., 2] - references[..., 0]
    heights = references[..., 3] - references[..., 1]
    ctr_x = references[..., 0] + 0.5 * widths
    ctr_y = references[..., 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = torch.clamp(deltas[..., 2] / ww, max=xform_clip)
    dh = torch.clamp(deltas[..., 3] / wh, max=xform_clip)
    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    half_w = 0.5 * (torch.exp(dw) * widths)
    half_h = 0.5 * (torch.exp(dh) * heights)
    return torch.stack(
        (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), -1
    )


def clip_to_input(boxes: Tensor, size: int) -> Tensor:
    """Clamp ``[..., 4]`` boxes into the ``size x size`` input (``[0, size]`` per coordinate)."""
    return torch.clamp(boxes, min=0.0, max=float(size))


def box_sides_at_least(boxes: Tensor, min_size: float) -> Tensor:
    """bool ``[...]``: both sides of each ``[..., 4]`` box are ``>= min_size``."""
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & (
        (boxes[..., 3] - boxes[..., 1]) >= min_size
    )


def scatter_selected(selected: Tensor, scores: Tensor, fill: float = 0.0) -> Tensor:
    """A dense copy of ``scores`` that keeps only the ``selected`` entries.

    Args:
        selected: int64 ``[K, 3]`` ``(image, class, box)`` rows from ``non_max_suppression``
            (``K`` may be 0).
        scores: ``[B, C, M]``.
        fill: value of the entries not selected.

    Returns:
        ``[B, C, M]``: ``scores`` where selected, ``fill`` elsewhere.
    """
    classes, boxes = scores.shape[1], scores.shape[2]
    flat_index = (selected[:, 0] * classes + selected[:, 1]) * boxes + selected[:, 2]
    flat = scores.reshape(-1)
    dense = torch.full_like(flat, fill).scatter(0, flat_index, flat.gather(0, flat_index))
    return dense.reshape_as(scores)


def keep_top_per_class(scores: Tensor, k: int, num_boxes: int) -> Tensor:
    """Zero all but the ``k`` best scores of each image and class: ``[B, C, M]`` in and out.

    torchvision's SSD keeps ``topk_candidates`` boxes per class before NMS; this is that
    filter without a loop. ``num_boxes`` is ``M``, passed as a Python int because the
    tracer cannot record a branch on a tensor's shape.
    """
    if k >= num_boxes:
        return scores
    top_index = scores.topk(k, dim=-1).indices
    mask = torch.zeros_like(scores).scatter(-1, top_index, 1.0)
    return scores * mask


def top_detections(
    dense: Tensor, boxes: Tensor, *, detections_per_img: int, num_classes: int, num_boxes: int
) -> PaddedDetections:
    """The ``D`` best selected detections per image, padded with zero rows.

    Args:
        dense: ``[B, C, M]`` scores of the kept detections, 0 elsewhere (``scatter_selected``);
            class index ``c`` is label ``c + 1`` (background left out).
        boxes: ``[B, M, 4]`` boxes shared by all classes (SSD) or ``[B, C, M, 4]`` one per
            class (R-CNN), in model-input pixels.
        detections_per_img: ``D``.
        num_classes, num_boxes: ``C`` and the largest ``M`` as Python ints (fixed by the
            model and the input size; the tracer cannot record decisions taken on tensor
            shapes). ``min(D, C * num_boxes)`` candidates are ranked, so a graph whose
            ``M`` varies must keep ``C * M`` at least that large.

    Returns:
        ``PaddedDetections`` with ``D`` rows per image.
    """
    per_class = dense.shape[2]
    k = min(detections_per_img, num_classes * num_boxes)
    scores, index = dense.flatten(1).topk(k, dim=1)
    class_index = torch.div(index, per_class, rounding_mode="floor")
    if boxes.dim() == 3:
        box_index = index - class_index * per_class
        flat_boxes = boxes
    else:
        box_index = index
        flat_boxes = boxes.flatten(1, 2)
    picked = flat_boxes.gather(1, box_index.unsqueeze(-1).expand(-1, -1, 4))
    valid = scores > 0
    labels = (class_index + 1) * valid.long()
    picked = picked * valid.unsqueeze(-1).to(picked.dtype)
    if k < detections_per_img:
        missing = detections_per_img - k
        picked = F.pad(picked, (0, 0, 0, missing))
        scores = F.pad(scores, (0, missing))
        labels = F.pad(labels, (0, missing))
    return PaddedDetections(picked, scores, labels, valid.long().sum(1))
