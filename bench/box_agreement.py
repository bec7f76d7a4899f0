"""Do fast and full JPEG decoding give the same boxes? The check behind ``bench/serve_load.py``.

Every image of a workload goes through the service's own pre- and post-processing
(``serve.preprocess.prepare_image`` with ``fast_jpeg`` on and off, the model in
onnxruntime, ``serve.postprocess.select_detections``), so the boxes are exactly the ones
``prodet serve`` answers with and without ``--no-fast-jpeg``, in the original upright
photo's pixels. Each full-decode detection scoring at least ``min_score`` is matched to
the fast decode's detection of the same class with the highest IoU (``>= 0.5``, among
those scoring at least ``0.8 * min_score``, so a score crossing the threshold is not
counted as a miss); the largest coordinate difference of each match is kept.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prodet.export.onnx_contract import ModelMetadata
from prodet.serve.model_runner import ModelRunner
from prodet.serve.postprocess import DetectionFilter, select_detections
from prodet.serve.preprocess import prepare_image

MAX_PIXELS = 40_000_000
MATCH_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    """Box differences between fast and full decoding over a workload.

    Attributes:
        images: images compared.
        deltas: per matched detection, its largest coordinate difference in pixels.
        unmatched: full-decode detections without a fast-decode match.
        frames_differ: images whose answered width/height differ (should be 0).
    """

    images: int
    deltas: list[float]
    unmatched: int
    frames_differ: int

    def line(self, min_score: float) -> str:
        """One sentence for BENCHMARKS.md."""
        if not self.deltas:
            return (
                f"Fast against full decoding: no detection scored >= {min_score} on the "
                f"{self.images} images; {self.unmatched} unmatched."
            )
        within = sum(d <= 1.0 for d in self.deltas) / len(self.deltas)
        ordered = sorted(self.deltas)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return (
            f"Fast against full decoding on the {self.images} images: {len(self.deltas)} boxes "
            f"scoring >= {min_score} matched, largest difference {ordered[-1]:.2f} px "
            f"(median {statistics.median(ordered):.2f}, p99 {p99:.2f}), {within:.1%} within "
            f"1 px; {self.unmatched} unmatched; {self.frames_differ} images answered in "
            "another frame."
        )


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _answer(data: bytes, runner: ModelRunner, keep: DetectionFilter, *, fast_jpeg: bool):
    metadata: ModelMetadata = runner.metadata
    prepared = prepare_image(data, metadata, max_pixels=MAX_PIXELS, fast_jpeg=fast_jpeg)
    raw = runner.run(prepared.tensor[None])[0]
    detections = select_detections(raw, prepared, metadata, keep)
    boxes = np.asarray([d.box for d in detections], np.float64).reshape(-1, 4)
    scores = np.asarray([d.score for d in detections], np.float64)
    labels = np.asarray([d.class_id for d in detections], np.int64)
    return (prepared.width, prepared.height), boxes, scores, labels


def compare_decodes(
    model: Path, images: Sequence[bytes], *, min_score: float = 0.5, provider: str = "auto"
) -> Agreement:
    """Answer every image with fast and with full decoding and compare the boxes."""
    runner = ModelRunner.load(model, provider=provider, warmup_batch=1)
    keep = DetectionFilter.build(runner.metadata, score_threshold=0.8 * min_score)
    deltas: list[float] = []
    unmatched = frames_differ = 0
    for data in images:
        full_size, full, full_scores, full_labels = _answer(data, runner, keep, fast_jpeg=False)
        fast_size, fast, _, fast_labels = _answer(data, runner, keep, fast_jpeg=True)
        frames_differ += full_size != fast_size
        for box, score, label in zip(full, full_scores, full_labels, strict=True):
            if score < min_score:
                continue
            same = np.flatnonzero(fast_labels == label)
            overlaps = _iou(box, fast[same]) if len(same) else np.zeros(0)
            if not len(overlaps) or overlaps.max() < MATCH_IOU:
                unmatched += 1
                continue
            match = fast[same[int(overlaps.argmax())]]
            deltas.append(float(np.abs(match - box).max()))
    return Agreement(len(images), deltas, unmatched, frames_differ)
