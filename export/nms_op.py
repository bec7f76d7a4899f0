"""Batched, class-aware non-maximum suppression that exports to ONNX ``NonMaxSuppression``.

ONNX's operator takes every image and class at once (``boxes [B, M, 4]``, ``scores
[B, C, M]``) and returns the kept ``(batch, class, box)`` triples, so the graph needs no
loop over images (torchvision's R-CNN export splits the batch, which breaks when the batch
size changes) and no reduction over a possibly empty tensor. ``torch.onnx.export`` calls
``symbolic``; ``forward`` computes the same selection with ``torchvision.ops.nms`` so the
export modules also run eagerly (tests compare the two).

Semantics (ONNX's, mirrored in ``forward``): per image and class, boxes with a score
``> score_threshold`` are visited in descending score order; a box is dropped when its IoU
with an already kept box of the same image and class is ``> iou_threshold``; at most
``max_output_per_class`` boxes are kept per image and class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.ops import nms


class _NonMaxSuppression(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        boxes: Tensor,
        scores: Tensor,
        max_output_per_class: int,
        iou_threshold: float,
        score_threshold: float,
    ) -> Tensor:
        rows = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                candidates = torch.nonzero(scores[b, c] > score_threshold).squeeze(1)
                keep = nms(boxes[b, candidates], scores[b, c, candidates], iou_threshold)
                kept = candidates[keep[:max_output_per_class]]
                rows.append(
                    torch.stack([torch.full_like(kept, b), torch.full_like(kept, c), kept], 1)
                )
        if not rows:
            return torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)
        return torch.cat(rows, 0)

    @staticmethod
    def symbolic(
        g: Any,
        boxes: Any,
        scores: Any,
        max_output_per_class: int,
        iou_threshold: float,
        score_threshold: float,
    ) -> Any:
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_output_per_class], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
        )


def non_max_suppression(
    boxes: Tensor,
    scores: Tensor,
    *,
    max_output_per_class: int,
    iou_threshold: float,
    score_threshold: float,
) -> Tensor:
    """Select boxes per image and class (see the module docstring).

    Args:
        boxes: float32 ``[B, M, 4]``, ``x1, y1, x2, y2`` (any consistent unit), shared by
            every class of an image.
        scores: float32 ``[B, C, M]``.
        max_output_per_class: most boxes kept per image and class (at least 1).
        iou_threshold: overlap above which the lower-scored box is dropped.
        score_threshold: boxes scoring ``<=`` this are never kept.

    Returns:
        int64 ``[K, 3]`` rows ``(image index, class index into scores' dim 1, box index)``;
        ``K`` may be 0.
    """
    if boxes.dim() != 3 or scores.dim() != 3:
        raise ValueError(
            f"non_max_suppression needs boxes [B, M, 4] and scores [B, C, M], got rank "
            f"{boxes.dim()} and {scores.dim()}"
        )
    if max_output_per_class < 1:
        raise ValueError(f"max_output_per_class must be at least 1, got {max_output_per_class}")
    return _NonMaxSuppression.apply(
        boxes, scores, int(max_output_per_class), float(iou_threshold), float(score_threshold)
    )
