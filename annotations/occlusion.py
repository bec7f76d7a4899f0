"""What is left visible of drawn objects, and the VOC flags that follows from it.

A ``VisibilityMap`` records, pixel by pixel, which object was drawn last (in front).
After drawing, each object's visible pixels give its box (VOC boxes mark the *visible*
extent), the hidden fraction of its silhouette (covered by later objects or clutter, or
outside the image) and whether the box misses part of the object (VOC's truncation).
``voc_flags`` turns that into what is written:

    * more than ``DROP_HIDDEN`` hidden, or a visible part under ``MIN_VISIBLE_SIDE``
      pixels wide or high: not annotated, nothing recognisable is left;
    * more than ``DIFFICULT_HIDDEN`` hidden: ``<difficult>1`` (VOC evaluation neither
      requires nor penalises detecting it);
    * ``<truncated>1`` when the image border cuts the object, or more than
      ``TRUNCATED_OUTSIDE`` of its silhouette lies outside its visible box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIFFICULT_HIDDEN = 0.6
DROP_HIDDEN = 0.9
TRUNCATED_OUTSIDE = 0.15
MIN_VISIBLE_SIDE = 4

_EMPTY = -1
_OCCLUDER = -2


@dataclass(frozen=True)
class Visibility:
    """What is left of one object.

    Attributes:
        box: the visible extent, ``x1, y1, x2, y2`` in 0-based continuous pixels, or None
            when no pixel is visible.
        hidden: fraction of the silhouette not visible (covered or outside the image).
        cut_by_border: part of the silhouette lies outside the image.
        outside_box: fraction of the silhouette outside ``box`` (1.0 when box is None).
    """

    box: tuple[float, float, float, float] | None
    hidden: float
    cut_by_border: bool
    outside_box: float


@dataclass(frozen=True)
class VocFlags:
    """``<truncated>`` and ``<difficult>`` of an object that is annotated."""

    truncated: bool
    difficult: bool


def voc_flags(visibility: Visibility) -> VocFlags | None:
    """The VOC flags of an object, or None when too little is visible to annotate it."""
    box = visibility.box
    if box is None or visibility.hidden > DROP_HIDDEN:
        return None
    if box[2] - box[0] < MIN_VISIBLE_SIDE or box[3] - box[1] < MIN_VISIBLE_SIDE:
        return None
    truncated = visibility.cut_by_border or visibility.outside_box > TRUNCATED_OUTSIDE
    return VocFlags(truncated=truncated, difficult=visibility.hidden > DIFFICULT_HIDDEN)


class VisibilityMap:
    """Which object is in front at each pixel of a ``width x height`` image."""

    def __init__(self, width: int, height: int) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.width, self.height = width, height
        self._front = np.full((height, width), _EMPTY, np.int32)
        self._objects: list[tuple[np.ndarray, int, int]] = []

    def add(self, mask: np.ndarray, x: int, y: int) -> int:
        """Draw an object in front of everything so far and return its id (0, 1, ...).

        Args:
            mask: bool ``[h, w]`` silhouette; may extend past any image border.
            x, y: image position of the mask's top-left pixel.
        """
        self._paint(mask, x, y, len(self._objects))
        self._objects.append((mask, x, y))
        return len(self._objects) - 1

    def occlude(self, mask: np.ndarray, x: int = 0, y: int = 0) -> None:
        """Draw something that hides objects but is never annotated (clutter)."""
        self._paint(mask, x, y, _OCCLUDER)

    def _clip(self, mask: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
        if mask.ndim != 2 or mask.dtype != np.bool_:
            raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} {mask.shape}")
        h, w = mask.shape
        return max(x, 0), max(y, 0), min(x + w, self.width), min(y + h, self.height)

    def _paint(self, mask: np.ndarray, x: int, y: int, owner: int) -> None:
        x0, y0, x1, y1 = self._clip(mask, x, y)
        if x1 > x0 and y1 > y0:
            self._front[y0:y1, x0:x1][mask[y0 - y : y1 - y, x0 - x : x1 - x]] = owner

    def __len__(self) -> int:
        return len(self._objects)

    def visibility(self, object_id: int) -> Visibility:
        """What is left of object ``object_id`` after everything drawn so far."""
        mask, x, y = self._objects[object_id]
        area = max(1, int(mask.sum()))
        x0, y0, x1, y1 = self._clip(mask, x, y)
        if x1 <= x0 or y1 <= y0:
            return Visibility(None, 1.0, True, 1.0)
        inside = int(mask[y0 - y : y1 - y, x0 - x : x1 - x].sum())
        visible = self._front[y0:y1, x0:x1] == object_id
        shown = int(visible.sum())
        if shown == 0:
            return Visibility(None, 1.0, inside < area, 1.0)
        rows = np.flatnonzero(visible.any(axis=1))
        cols = np.flatnonzero(visible.any(axis=0))
        bx0, bx1 = x0 + int(cols[0]), x0 + int(cols[-1]) + 1
        by0, by1 = y0 + int(rows[0]), y0 + int(rows[-1]) + 1
        in_box = int(mask[by0 - y : by1 - y, bx0 - x : bx1 - x].sum())
        return Visibility(
            box=(float(bx0), float(by0), float(bx1), float(by1)),
            hidden=1.0 - shown / area,
            cut_by_border=inside < area,
            outside_box=1.0 - in_box / area,
        )
