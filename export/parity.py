"""The parity gate: onnxruntime must give the PyTorch model's detections on real images.

Per image, the ONNX detections are matched to PyTorch's (same label, best IoU, greedily
from the highest PyTorch score). The image passes when

* the counts differ by at most ``max_count_diff`` (1: a score at the threshold may flip),
* at most that many detections on either side stay unmatched, and
* every matched pair has IoU ``>= min_iou`` (0.99) and a score difference
  ``<= max_score_diff`` (1e-3).

Each failure names the image and what differed, so a broken export says where it broke.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from prodet.annotations.boxes import box_iou
from prodet.export.onnx_contract import Detections
from prodet.export.ort_runner import run_batches

MIN_IOU = 0.99
MAX_SCORE_DIFF = 1e-3
MAX_COUNT_DIFF = 1
MATCH_IOU = 0.5  # a candidate farther than this from every reference box is unmatched


class ParityError(ValueError):
    """onnxruntime's detections differ from PyTorch's (the message lists the images)."""


@dataclass(frozen=True)
class ImageParity:
    """How one image's ONNX detections compare with PyTorch's.

    ``problem`` is ``None`` when the image passes; ``min_iou`` and ``max_score_diff`` are
    over matched pairs (1.0 and 0.0 when there are none).
    """

    image_id: str
    batch_size: int
    reference_count: int
    candidate_count: int
    matched: int
    min_iou: float
    max_score_diff: float
    problem: str | None


@dataclass
class ParityReport:
    """All images' results; ``passed`` when none has a problem."""

    images: list[ImageParity] = field(default_factory=list)

    @property
    def failures(self) -> list[ImageParity]:
        return [image for image in self.images if image.problem is not None]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line: images, batch sizes, detections, worst IoU and score difference."""
        worst_iou = min((i.min_iou for i in self.images), default=1.0)
        worst_score = max((i.max_score_diff for i in self.images), default=0.0)
        batches = sorted({i.batch_size for i in self.images})
        ids = {i.image_id for i in self.images}
        detections = sum(i.reference_count for i in self.images if i.batch_size == batches[0])
        return (
            f"{len(ids)} images at batch size {', '.join(map(str, batches))}: "
            f"{detections} PyTorch detections, min matched IoU {worst_iou:.5f}, max score "
            f"difference {worst_score:.2e}, {len(self.failures)} failing"
        )


def compare_detections(
    image_id: str,
    reference: Detections,
    candidate: Detections,
    *,
    batch_size: int = 1,
    classes: Sequence[str] | None = None,
) -> ImageParity:
    """Match ``candidate`` (onnxruntime) against ``reference`` (PyTorch); see the module doc."""
    iou = box_iou(reference.boxes, candidate.boxes)
    used = np.zeros(len(candidate), dtype=bool)
    worst_iou, worst_score, matched, bad = 1.0, 0.0, 0, []
    for i in np.argsort(-reference.scores, kind="stable"):
        options = np.where((candidate.labels == reference.labels[i]) & ~used, iou[i], -1.0)
        j = int(np.argmax(options)) if len(options) else -1
        if j < 0 or options[j] < MATCH_IOU:
            continue
        used[j] = True
        matched += 1
        pair_iou = float(iou[i, j])
        diff = abs(float(reference.scores[i]) - float(candidate.scores[j]))
        worst_iou, worst_score = min(worst_iou, pair_iou), max(worst_score, diff)
        if pair_iou < MIN_IOU or diff > MAX_SCORE_DIFF:
            label = int(reference.labels[i])
            name = classes[label] if classes is not None else str(label)
            bad.append(
                f"{name!r} box {np.round(reference.boxes[i], 1).tolist()} score "
                f"{reference.scores[i]:.4f} vs {candidate.scores[j]:.4f} (IoU {pair_iou:.4f})"
            )
    count_diff = abs(len(reference) - len(candidate))
    unmatched = (len(reference) - matched, len(candidate) - matched)
    problems = []
    if count_diff > MAX_COUNT_DIFF:
        problems.append(f"{len(reference)} PyTorch vs {len(candidate)} ONNX detections")
    if max(unmatched) > MAX_COUNT_DIFF:
        problems.append(
            f"{unmatched[0]} PyTorch and {unmatched[1]} ONNX detections have no counterpart"
        )
    if bad:
        problems.append(
            f"{len(bad)} matched pairs differ beyond IoU >= {MIN_IOU} / score diff <= "
            f"{MAX_SCORE_DIFF}, e.g. {bad[0]}"
        )
    return ImageParity(
        image_id,
        batch_size,
        len(reference),
        len(candidate),
        matched,
        worst_iou,
        worst_score,
        "; ".join(problems) or None,
    )


@torch.no_grad()
def torch_detections(
    model: nn.Module, images: torch.Tensor, batch_size: int = 8
) -> list[Detections]:
    """The eager model's detections of ``images`` (float32 ``[N, 3, S, S]``, normalised)."""
    model.eval()
    result = []
    for start in range(0, len(images), batch_size):
        for det in model(images[start : start + batch_size]):
            result.append(
                Detections(
                    det["boxes"].float().numpy(),
                    det["scores"].float().numpy(),
                    det["labels"].numpy().astype(np.int64),
                )
            )
    return result


def check_parity(
    model: nn.Module,
    session: ort.InferenceSession,
    images: torch.Tensor,
    image_ids: Sequence[str],
    *,
    batch_sizes: Sequence[int] = (1, 8),
    classes: Sequence[str] | None = None,
) -> ParityReport:
    """Compare the eager ``model`` with the ONNX ``session`` on every image at each batch size.

    Args:
        model: the PyTorch detector (eval mode, CPU).
        session: the exported graph.
        images: float32 ``[N, 3, S, S]`` real, normalised images.
        image_ids: one name per image, used in the report.
        batch_sizes: onnxruntime batch sizes to run (a fixed-batch graph uses its own).
        classes: class names for the messages.
    """
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
    reference = torch_detections(model, images)
    array = images.numpy()
    report = ParityReport()
    for batch_size in batch_sizes:
        candidates = run_batches(session, array, batch_size)
        for image_id, ref, cand in zip(image_ids, reference, candidates, strict=True):
            report.images.append(
                compare_detections(image_id, ref, cand, batch_size=batch_size, classes=classes)
            )
    return report


def raise_on_failure(report: ParityReport, hint: str = "") -> None:
    """Raise ``ParityError`` naming the failing images (up to 10) and how they differed;
    ``hint`` ends the message."""
    if report.passed:
        return
    lines = [f"  {f.image_id} (batch {f.batch_size}): {f.problem}" for f in report.failures[:10]]
    more = len(report.failures) - len(lines)
    if more > 0:
        lines.append(f"  ... and {more} more")
    if hint:
        lines.append(hint)
    raise ParityError(f"parity gate failed: {report.summary()}\n" + "\n".join(lines))
