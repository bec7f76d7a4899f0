"""What ``prodet train --recipe auto`` knows about a dataset: statistics of its training
split, measured from the record table's columns alone (no image is decoded: sizes and
boxes are in the records).

Object size is ``sqrt(box area / image area)``: the box's side as a fraction of the
image side (the default ``stretch`` resize keeps it, so an object of relative size ``r``
spans about ``r * size`` input pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodet.annotations.record_table import RecordTable
from prodet.annotations.schema import VocDataset


@dataclass(frozen=True, eq=False)
class DatasetStats:
    """What the recipe knows about the training split (the whole split, before carving).

    Attributes:
        train_split: the split measured.
        split_images: images of every split of the dataset.
        val_images: images of a separate validation split (0 when there is none).
        classes: class names, background excluded.
        objects_per_class: objects of each class in ``train_split``, in ``classes`` order.
        images_without_objects: training images holding no box.
        image_side_median: median of each image's longer side, in pixels.
        aspect_ratios: image ``width / height`` at the 5th, 50th and 95th percentiles.
        object_sizes: ``sqrt(box area / image area)`` of every object, sorted.
        class_size_medians: median ``object_sizes`` per class (nan for an absent class).
    """

    train_split: str
    split_images: dict[str, int]
    val_images: int
    classes: tuple[str, ...]
    objects_per_class: tuple[int, ...]
    images_without_objects: int
    image_side_median: float
    aspect_ratios: tuple[float, float, float]
    object_sizes: np.ndarray = field(repr=False)
    class_size_medians: tuple[float, ...] = ()

    @property
    def train_images(self) -> int:
        return self.split_images.get(self.train_split, 0)

    @property
    def objects(self) -> int:
        return len(self.object_sizes)

    def size_quantile(self, q: float) -> float:
        """The ``q`` quantile (0 to 1) of the relative object sizes."""
        return float(np.quantile(self.object_sizes, q))

    def fraction_below(self, relative_size: float) -> float:
        """Share of objects whose relative size is below ``relative_size``."""
        return float(np.searchsorted(self.object_sizes, relative_size) / max(self.objects, 1))

    def summary(self) -> dict[str, Any]:
        """The statistics as plain values (for ``recipe.yaml``)."""
        sizes = [round(self.size_quantile(q), 3) for q in (0.1, 0.5, 0.9)] if self.objects else []
        return {
            "train_split": self.train_split,
            "images_per_split": dict(self.split_images),
            "train_images": self.train_images,
            "separate_val_images": self.val_images,
            "images_without_objects": self.images_without_objects,
            "objects": self.objects,
            "objects_per_class": dict(zip(self.classes, self.objects_per_class, strict=True)),
            "image_side_median_px": self.image_side_median,
            "image_aspect_w_over_h_p5_p50_p95": list(self.aspect_ratios),
            "object_size_rel_p10_p50_p90": sizes,
        }


def dataset_stats(voc: VocDataset, *, train_split: str, val_split: str) -> DatasetStats:
    """Measure ``train_split`` of ``voc`` from its record table's columns (no image is read).

    ``val_split`` only decides ``val_images``: the size of a separate validation split.

    Raises:
        ValueError: ``train_split`` is not a split of the dataset.
    """
    if train_split not in voc.splits:
        known = ", ".join(sorted(voc.splits)) or "none"
        raise ValueError(f"train_split {train_split!r} not in the dataset (has: {known})")
    table = RecordTable.from_records(voc.records)  # the dataset's own table, not a copy
    index = voc.record_index()
    in_train = np.zeros(len(table), dtype=bool)
    in_train[[index[i] for i in voc.splits[train_split] if i in index]] = True
    widths = table.widths[in_train].astype(np.float64)
    heights = table.heights[in_train].astype(np.float64)
    of_train = np.repeat(in_train, table.counts)
    boxes, labels = table.boxes[of_train], table.labels[of_train]
    image_areas = np.repeat(table.widths * table.heights, table.counts)[of_train]
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    sizes = np.sqrt(np.clip(box_areas, 0.0, None) / np.maximum(image_areas, 1))
    n_classes = len(voc.classes) - 1
    medians = tuple(
        float(np.median(sizes[labels == c])) if np.any(labels == c) else math.nan
        for c in range(1, n_classes + 1)
    )
    ratios = widths / np.maximum(heights, 1.0)
    p5, p50, p95 = (
        (float(v) for v in np.percentile(ratios, [5, 50, 95])) if len(ratios) else (0, 0, 0)
    )
    has_val = val_split in voc.splits and val_split != train_split
    return DatasetStats(
        train_split=train_split,
        split_images={name: len(ids) for name, ids in voc.splits.items()},
        val_images=len(voc.splits[val_split]) if has_val else 0,
        classes=tuple(voc.classes[1:]),
        objects_per_class=tuple(int(n) for n in np.bincount(labels, minlength=n_classes + 1)[1:]),
        images_without_objects=int(np.sum(table.counts[in_train] == 0)),
        image_side_median=float(np.median(np.maximum(widths, heights))) if len(widths) else 0.0,
        aspect_ratios=(round(p5, 3), round(p50, 3), round(p95, 3)),
        object_sizes=np.sort(sizes),
        class_size_medians=medians,
    )
