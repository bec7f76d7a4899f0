"""Turn VOC's written boxes into the dataset's box convention, fixing what can be fixed.

VOC pixel indices are 1-based and inclusive, so ``x1 = xmin - 1``, ``y1 = ymin - 1``,
``x2 = xmax``, ``y2 = ymax`` in 0-based continuous pixels (see ``annotations.schema``).
Tools disagree on 0- vs 1-based writing (Roboflow and CVAT write ``xmin=0``), so a box
that leaves the image by at most ``EDGE_TOLERANCE`` pixels is clipped silently.
"""

from __future__ import annotations

import numpy as np

from prodet.annotations.report import Problem
from prodet.annotations.voc_xml import RawObject

EDGE_TOLERANCE = 1.0
MIN_SIDE = 1.0  # a kept box is at least one pixel wide and high
ON_ERROR_MODES = ("fail", "skip", "repair")


def voc_to_xyxy(xmin: float, ymin: float, xmax: float, ymax: float) -> tuple[float, ...]:
    """VOC 1-based inclusive pixel indices to 0-based continuous ``x1, y1, x2, y2``."""
    return xmin - 1.0, ymin - 1.0, xmax, ymax


def xyxy_to_voc(x1: float, y1: float, x2: float, y2: float) -> tuple[float, ...]:
    """Inverse of ``voc_to_xyxy``."""
    return x1 + 1.0, y1 + 1.0, x2, y2


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of ``[N, 4]`` and ``[M, 4]`` ``x1, y1, x2, y2`` boxes as float64 ``[N, M]``.

    Areas are continuous, ``(x2 - x1) * (y2 - y1)`` (no VOC devkit ``+ 1``); a side with
    ``x2 < x1`` counts as 0, and the IoU of two boxes without area is 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0.0, None).prod(axis=-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0.0, None).prod(axis=-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0.0, None).prod(axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def clean_object_lists(
    objects: tuple[RawObject, ...],
    width: int,
    height: int,
    file: str,
    on_error: str,
    known_classes: frozenset[str] | None = None,
) -> tuple[list[tuple[float, float, float, float]], list[str], list[bool], list[Problem]]:
    """Convert, clip and validate the boxes of one image.

    Args:
        objects: the file's objects as written.
        width, height: the image's real size in pixels.
        file: the annotation's name, for problem reports.
        on_error: ``"fail"`` (report errors; the caller fails the run), ``"skip"`` (drop
            the offending object) or ``"repair"`` (swap inverted coordinates, drop the rest).
        known_classes: when given, objects of other classes are reported and dropped.

    Returns:
        The kept boxes ``(x1, y1, x2, y2)`` (0-based continuous pixels), their class
        names and difficult flags, and every problem found, each naming the file and
        object index. Plain lists: the conversion workers build them cheaply and send
        them between processes.
    """
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error must be one of {ON_ERROR_MODES}, got {on_error!r}")
    kept: list[tuple[float, float, float, float]] = []
    names: list[str] = []
    difficult: list[bool] = []
    problems: list[Problem] = []

    def report(kind: str, obj: RawObject, message: str, action: str) -> None:
        problems.append(Problem(kind, file, message, action, obj.index))

    for obj in objects:
        if known_classes is not None and obj.name not in known_classes:
            report("unknown_class", obj, f"class {obj.name!r} is not in --classes", "dropped")
            continue
        xmin, ymin, xmax, ymax = obj.xmin, obj.ymin, obj.xmax, obj.ymax
        if xmin > xmax or ymin > ymax:
            written = f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
            if on_error != "repair":
                report("inverted_box", obj, f"inverted box {written}", "dropped")
                continue
            xmin, xmax = min(xmin, xmax), max(xmin, xmax)
            ymin, ymax = min(ymin, ymax), max(ymin, ymax)
            report("inverted_box", obj, f"inverted box {written}", "coordinates swapped")
        x1, y1, x2, y2 = voc_to_xyxy(xmin, ymin, xmax, ymax)
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 - cx1 < MIN_SIDE or cy2 - cy1 < MIN_SIDE:
            report(
                "degenerate_box",
                obj,
                f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has no area inside the "
                f"{width}x{height} image",
                "dropped",
            )
            continue
        overshoot = max(-x1, -y1, x2 - width, y2 - height)
        if overshoot > EDGE_TOLERANCE:
            report(
                "clipped_box",
                obj,
                f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) leaves the {width}x{height} image",
                f"clipped to ({cx1:g}, {cy1:g}, {cx2:g}, {cy2:g})",
            )
        kept.append((cx1, cy1, cx2, cy2))
        names.append(obj.name)
        difficult.append(obj.difficult)
    return kept, names, difficult, problems
