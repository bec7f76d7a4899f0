"""Hand-made ground truth and predictions for the metric tests (numpy, detector layout)."""

from __future__ import annotations

from typing import Any

import numpy as np

CLASSES = ("__background__", "bottle", "can", "box")
# Three disjoint 10-20 px boxes, x1, y1, x2, y2 in pixels.
A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
C = [40.0, 40.0, 60.0, 60.0]


def gt(boxes: Any, labels: Any, difficult: Any = None) -> dict[str, np.ndarray]:
    """Ground truth of one image: boxes ``[N, 4]``, labels ``[N]``, difficult ``[N]``."""
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
        "difficult": np.zeros(len(labels), bool) if difficult is None else np.array(difficult),
    }


def pred(boxes: Any, scores: Any, labels: Any) -> dict[str, np.ndarray]:
    """Detections of one image: boxes ``[D, 4]``, scores ``[D]``, labels ``[D]``."""
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
    }
