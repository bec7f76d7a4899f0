"""A model's raw rows to the detections a client asked for, in original-image pixels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from prodet.datasets.geometry import boxes_to_original
from prodet.export.onnx_contract import Detections, ModelMetadata
from prodet.serve.preprocess import PreparedImage


@dataclass(frozen=True)
class DetectionFilter:
    """What a client asked for.

    Attributes:
        score_threshold: keep scores ``>=`` this; ``None`` means the model's ``score_thresh``.
        max_detections: keep at most this many (highest scores first); ``None``: all.
        classes: keep only these class names; ``None``: all.
    """

    score_threshold: float | None = None
    max_detections: int | None = None
    classes: frozenset[str] | None = None

    @classmethod
    def build(
        cls,
        metadata: ModelMetadata,
        *,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        classes: Iterable[str] | None = None,
    ) -> DetectionFilter:
        """A filter checked against the model.

        ``classes`` items may themselves be comma-separated (``?classes=a,b&classes=c``).

        Raises:
            ValueError: a class name the model does not know, or a value out of range.
        """
        if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if max_detections is not None and max_detections < 0:
            raise ValueError(f"max_detections must be >= 0, got {max_detections}")
        names: frozenset[str] | None = None
        if classes is not None:
            names = frozenset(n.strip() for item in classes for n in item.split(",") if n.strip())
            known = set(metadata.classes[1:])
            unknown = sorted(names - known)
            if unknown:
                raise ValueError(
                    f"unknown class name(s) {unknown}; this model knows {sorted(known)}"
                )
            if not names:
                names = None
        return cls(score_threshold, max_detections, names)


@dataclass(frozen=True)
class Detection:
    """One detection: ``box`` is ``x1, y1, x2, y2`` in the original image's pixels."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of the HTTP API."""
        x1, y1, x2, y2 = self.box
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": self.score,
            "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
        }


def select_detections(
    raw: Detections, image: PreparedImage, metadata: ModelMetadata, keep: DetectionFilter
) -> list[Detection]:
    """Filter one image's rows and map their boxes to the original image.

    Rows come out sorted by descending score; boxes are rounded to 0.01 pixel.
    """
    threshold = metadata.score_thresh if keep.score_threshold is None else keep.score_threshold
    mask = raw.scores >= threshold
    if keep.classes is not None:
        wanted = [i for i, name in enumerate(metadata.classes) if name in keep.classes]
        mask &= np.isin(raw.labels, wanted)
    order = np.flatnonzero(mask)
    order = order[np.argsort(-raw.scores[order], kind="stable")]
    if keep.max_detections is not None:
        order = order[: keep.max_detections]
    boxes = boxes_to_original(raw.boxes[order], image.geometry)
    return [
        Detection(
            label=metadata.classes[int(label)],
            class_id=int(label),
            score=round(float(score), 5),
            box=tuple(round(float(v), 2) for v in box),  # type: ignore[arg-type]
        )
        for label, score, box in zip(raw.labels[order], raw.scores[order], boxes, strict=True)
    ]
