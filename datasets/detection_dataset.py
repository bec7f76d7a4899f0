"""A torch ``Dataset`` over one split of the pickled dataset.

Each item is ``(image, target)``:

* ``image``: float32 ``[3, H, W]``; ``[3, size, size]`` with a transform from
  ``datasets.augment.build_transform``, else the decoded image scaled to ``0..1``.
* ``target``: a dict with

  - ``"boxes"``: float32 ``[N, 4]``, ``x1, y1, x2, y2`` in 0-based continuous pixels of
    ``image`` (the ``annotations.schema`` convention); ``[0, 4]`` for an image without
    boxes, or when augmentation removed them all.
  - ``"labels"``: int64 ``[N]``, indices into ``classes`` (0 is background, never used).
  - ``"difficult"``: bool ``[N]``, VOC's difficult flag.
  - ``"image_id"``: str, the record's id.
  - ``"orig_size"``: ``(height, width)`` of the stored image.
  - ``"geometry"``: a ``datasets.geometry.ResizeGeometry``, how the stored image maps onto
    ``image`` (``image_xy = orig_xy * scale + pad``); pass it to
    ``datasets.geometry.boxes_to_original`` to map predictions back. Without a transform
    it is ``ResizeGeometry.identity``; ``None`` for random presets, whose samples have no
    fixed mapping back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from prodet.annotations.image_decode import AlphaMode, decode_image_file
from prodet.annotations.pickle_store import load_dataset
from prodet.annotations.schema import ImageRecord, VocDataset
from prodet.datasets.augment import DetectionTransform
from prodet.datasets.geometry import ResizeGeometry

Target = dict[str, Any]
log = logging.getLogger(__name__)


def split_ids(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Carve a held-out part (e.g. ``val`` out of ``trainval``) deterministically.

    The choice depends only on the set of ids, ``fraction`` and ``seed``, not on the
    order of ``ids``.

    Args:
        ids: image ids, without duplicates.
        fraction: share of ids to hold out, in ``(0, 1)``; at least one id is held out
            and at least one kept.
        seed: seed of the shuffle.

    Returns:
        ``(kept, held_out)``, each in the order of ``ids``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates; pass each image id once")
    if len(ids) < 2:
        raise ValueError(f"need at least 2 ids to split, got {len(ids)}")
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    order = sorted(ids)
    picked = np.random.default_rng(seed).permutation(len(order))[:count]
    held = {order[i] for i in picked}
    return [i for i in ids if i not in held], [i for i in ids if i in held]


class DetectionDataset(Dataset[tuple[torch.Tensor, Target]]):
    """The images and boxes of one split (or an explicit id list).

    Args:
        dataset: a loaded ``VocDataset`` or the path of a pickle from ``prodet convert``.
        split: split name (``"trainval"``, ``"test"``, ...); ignored when ``ids`` is given.
        ids: explicit image ids, e.g. one part of ``split_ids``.
        transform: from ``build_transform``; None yields the decoded image in ``0..1``.
        alpha: how images with transparency are flattened (see ``annotations.image_decode``).
        cache_mb: memory budget of ``preload`` for decoded images (0: never cache).

    Raises:
        ValueError: the split does not exist (the message lists the ones that do), an id
            is unknown, or a decoded image's size disagrees with its record.
    """

    def __init__(
        self,
        dataset: VocDataset | str | os.PathLike[str],
        split: str | None = None,
        *,
        ids: Sequence[str] | None = None,
        transform: DetectionTransform | None = None,
        alpha: AlphaMode = "composite",
        cache_mb: float = 0.0,
    ) -> None:
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0 (0 disables the cache), got {cache_mb}")
        self.voc = dataset if isinstance(dataset, VocDataset) else load_dataset(dataset)
        self.records = self._select(self.voc, split, ids)
        self.split = split if ids is None else None
        self.transform = transform
        self.alpha: AlphaMode = alpha
        self.cache_mb = cache_mb
        self._cache: list[np.ndarray] | None = None

    def preload(self) -> bool:
        """Decode every image into memory if they fit in ``cache_mb``; True if cached.

        Decoded images take ``width * height * 3`` bytes each; a split larger than the
        budget is left to decode per item (logged). Call it before building a loader, so
        forked workers inherit the cache instead of each decoding again.
        """
        if self._cache is not None:
            return True
        needed = sum(r.width * r.height * 3 for r in self.records) / 2**20
        if needed == 0 or needed > self.cache_mb:
            if self.cache_mb:
                log.info(
                    "not caching %d decoded images: %.0f MB > cache_mb %.0f",
                    len(self.records),
                    needed,
                    self.cache_mb,
                )
            return False
        cache = [self._decode(i) for i in range(len(self.records))]
        for image in cache:
            image.setflags(write=False)  # a transform writing in place would corrupt it
        self._cache = cache
        log.info("cached %d decoded images (%.0f MB)", len(self.records), needed)
        return True

    @staticmethod
    def _select(voc: VocDataset, split: str | None, ids: Sequence[str] | None) -> list[ImageRecord]:
        if ids is not None:
            index = voc.record_index()
            unknown = [i for i in ids if i not in index]
            if unknown:
                raise ValueError(
                    f"{len(unknown)} id(s) not in the dataset, e.g. {unknown[0]!r}; take ids "
                    "from its splits"
                )
            return [voc.records[index[i]] for i in ids]
        if split is None:
            raise ValueError("give a split name or an explicit ids list")
        if split not in voc.splits:
            known = ", ".join(sorted(voc.splits)) or "none"
            raise ValueError(
                f"unknown split {split!r}; this dataset has: {known}. To hold out a "
                "validation set, carve it from trainval with datasets.detection_dataset."
                "split_ids and pass ids=..."
            )
        return voc.split_records(split)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; ``classes[0] == "__background__"``."""
        return self.voc.classes

    def __len__(self) -> int:
        return len(self.records)

    def reseed(self, seed: int) -> None:
        """Reseed the transform's generators (the data loader calls this per worker)."""
        if self.transform is not None:
            self.transform.reseed(seed)

    def image_path(self, index: int) -> Path:
        """Absolute path of item ``index``'s image."""
        return Path(self.voc.root) / self.records[index].image_path

    def _decode(self, index: int) -> np.ndarray:
        record = self.records[index]
        image = decode_image_file(self.image_path(index), alpha=self.alpha)
        height, width = image.shape[:2]
        if (width, height) != (record.width, record.height):
            raise ValueError(
                f"{record.image_id}: image is {width}x{height} but the dataset says "
                f"{record.width}x{record.height}; re-run `prodet convert`"
            )
        return image

    def _image(self, index: int) -> np.ndarray:
        """The decoded image of item ``index`` (uint8 ``[H, W, 3]``, read-only if cached)."""
        return self._cache[index] if self._cache is not None else self._decode(index)

    def _partners(self, index: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        if self.transform is None or not self.transform.mosaic_partners:
            return []
        picked = self.transform.pick_partners(len(self.records), index)
        return [
            (
                self._image(i),
                self.records[i].boxes,
                self.records[i].labels,
                self.records[i].difficult,
            )
            for i in picked
        ]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        """Decode, transform and package one sample (see the module docstring)."""
        record = self.records[index]
        image = self._image(index)
        height, width = image.shape[:2]
        target: Target = {"image_id": record.image_id, "orig_size": (height, width)}
        if self.transform is None:
            tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            target.update(
                boxes=torch.from_numpy(record.boxes.copy()),
                labels=torch.from_numpy(record.labels.copy()),
                difficult=torch.from_numpy(record.difficult.astype(bool)),
                geometry=ResizeGeometry.identity(width, height),
            )
            return tensor.float().div_(255.0), target
        sample = self.transform(
            image, record.boxes, record.labels, record.difficult, self._partners(index)
        )
        target.update(
            boxes=torch.from_numpy(sample.boxes),
            labels=torch.from_numpy(sample.labels),
            difficult=torch.from_numpy(sample.difficult),
            geometry=self.transform.geometry(width, height),
        )
        return sample.image, target
