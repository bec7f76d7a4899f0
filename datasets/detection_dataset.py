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
  - ``"orig_size"``: ``(height, width)`` of the stored image (the record's size).
  - ``"geometry"``: a ``datasets.geometry.ResizeGeometry``, how the stored image maps onto
    ``image`` (``image_xy = orig_xy * scale + pad``); pass it to
    ``datasets.geometry.boxes_to_original`` to map predictions back. Without a transform
    it is ``ResizeGeometry.identity``; ``None`` for random presets, whose samples have no
    fixed mapping back.

Reduced decoding (``fast_jpeg``, on by default with a transform): a JPEG is decoded at the
smallest DCT scale that keeps ``datasets.geometry.decode_floor(size, resize_mode,
oversample=...)``: ``oversample`` times the input size (default ``TRAIN_OVERSAMPLE``, 2)
on the side that matters for presets whose crops zoom in (``"scale"``, ``"ssd"``, mosaic:
``DetectionTransform.zooms_in``), and the input size itself for the others (``"light"``
flips and recolours, so more pixels would only be resized away) and for ``eval``, which
is then the service's decode (``serve.preprocess``). The
records' boxes are scaled onto the reduced pixels (``datasets.image_cache``) and the
``eval`` geometry is composed with the reduction (``datasets.geometry.through_reduction``),
so boxes mapped back are in original pixels whichever way the image was decoded.
Caching (``cache``: ``ram``, ``disk`` or ``none``) is described in ``datasets.image_cache``.
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

from prodet.annotations.image_decode import AlphaMode
from prodet.annotations.pickle_store import load_dataset
from prodet.annotations.schema import ImageRecord, VocDataset
from prodet.datasets.augment import DetectionTransform
from prodet.datasets.geometry import (
    TRAIN_OVERSAMPLE,
    ResizeGeometry,
    decode_floor,
    through_reduction,
)
from prodet.datasets.image_cache import (
    CacheMode,
    DiskCache,
    SourceImage,
    check_cache_mode,
    decode_source,
    decoded_shape,
    default_cache_dir,
)

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
        cache: ``"ram"`` (``preload`` keeps the split in memory within ``cache_mb``),
            ``"disk"`` (files under ``cache_dir``, reused across runs) or ``"none"``.
        cache_mb: memory budget of the ``ram`` cache (0: never cache).
        cache_dir: folder of the ``disk`` cache (default ``image_cache.default_cache_dir``).
        fast_jpeg: decode JPEGs at reduced size (see the module docstring); ignored without
            a transform, whose items are the images in full.
        oversample: times the input size kept by reduced decodes for presets that zoom in.

    Attributes:
        min_sides: the decode floor of JPEGs (``None``: decoded in full).
        disk_cache: the ``image_cache.DiskCache`` with ``cache="disk"``, else None.

    Raises:
        ValueError: the split does not exist (the message lists the ones that do), an id
            is unknown, a bad cache setting, or a decoded image's size disagrees with its
            record.
    """

    def __init__(
        self,
        dataset: VocDataset | str | os.PathLike[str],
        split: str | None = None,
        *,
        ids: Sequence[str] | None = None,
        transform: DetectionTransform | None = None,
        alpha: AlphaMode = "composite",
        cache: str = "ram",
        cache_mb: float = 0.0,
        cache_dir: str | os.PathLike[str] | None = None,
        fast_jpeg: bool = True,
        oversample: float = TRAIN_OVERSAMPLE,
    ) -> None:
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0 (0 disables the cache), got {cache_mb}")
        self.cache: CacheMode = check_cache_mode(cache)
        self.voc = dataset if isinstance(dataset, VocDataset) else load_dataset(dataset)
        self.records = self._select(self.voc, split, ids)
        self.split = split if ids is None else None
        self.transform = transform
        self.alpha: AlphaMode = alpha
        self.cache_mb = cache_mb
        self.min_sides: tuple[int, int] | None = None
        if transform is not None and fast_jpeg:
            # Only crops that enlarge part of the image need pixels beyond the input size.
            factor = oversample if transform.zooms_in else 1.0
            self.min_sides = decode_floor(transform.size, transform.resize_mode, oversample=factor)
        self._ram: list[SourceImage] | None = None
        self.disk_cache: DiskCache | None = None
        self._positions: list[int] = []
        if self.cache == "disk":
            self.disk_cache = DiskCache(
                cache_dir or default_cache_dir(),
                dataset_hash=self.voc.content_hash,
                min_sides=self.min_sides,
                alpha=alpha,
            )
            index = self.voc.record_index()
            self._positions = [index[r.image_id] for r in self.records]

    def preload(self) -> bool:
        """With ``cache="ram"``, decode every image into memory if they fit; True if cached.

        Images take ``w * h * 3`` bytes each at their (reduced) decoded size; a split
        larger than ``cache_mb`` is left to decode per item (logged). Call it before
        building a loader, so forked workers inherit the cache instead of each decoding
        again. The ``disk`` cache needs no preload: the first epoch fills it.
        """
        if self._ram is not None:
            return True
        if self.cache != "ram":
            return False
        needed = sum(np.prod(decoded_shape(r, self.min_sides)) for r in self.records) / 2**20
        if needed == 0:  # an empty split (no validation images): nothing to cache
            return False
        if needed > self.cache_mb:
            if self.cache_mb:
                log.info(
                    "not caching %d decoded images: %.0f MB > cache_mb %.0f",
                    len(self.records),
                    needed,
                    self.cache_mb,
                )
            return False
        self._ram = [self._decode(i) for i in range(len(self.records))]
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

    def _decode(self, index: int) -> SourceImage:
        return decode_source(
            self.image_path(index), self.records[index], alpha=self.alpha, min_sides=self.min_sides
        )

    def source(self, index: int) -> SourceImage:
        """Item ``index``'s decoded (maybe reduced) image, from a cache when there is one."""
        if self._ram is not None:
            return self._ram[index]
        if self.disk_cache is None:
            return self._decode(index)
        record, path = self.records[index], self.image_path(index)
        cached = self.disk_cache.load(self._positions[index], record, path)
        if cached is not None:
            return cached
        image = self._decode(index)
        self.disk_cache.store(self._positions[index], record, path, image)
        return image

    def _sample(
        self, index: int, image: SourceImage | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(pixels, boxes on them, labels, difficult)`` of item ``index``."""
        record = self.records[index]
        image = self.source(index) if image is None else image
        boxes = record.boxes
        if image.scale != (1.0, 1.0):
            boxes = boxes * np.asarray(image.scale * 2, dtype=np.float32)
        return image.pixels, boxes, record.labels, record.difficult

    def _partners(self, index: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        if self.transform is None or not self.transform.mosaic_partners:
            return []
        picked = self.transform.pick_partners(len(self.records), index)
        return [self._sample(i) for i in picked]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        """Decode, transform and package one sample (see the module docstring)."""
        record = self.records[index]
        size = (record.width, record.height)
        target: Target = {"image_id": record.image_id, "orig_size": (record.height, record.width)}
        if self.transform is None:
            pixels = self.source(index).pixels
            tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
            target.update(
                boxes=torch.from_numpy(record.boxes.copy()),
                labels=torch.from_numpy(record.labels.copy()),
                difficult=torch.from_numpy(record.difficult.astype(bool)),
                geometry=ResizeGeometry.identity(*size),
            )
            return tensor.float().div_(255.0), target
        image = self.source(index)
        sample = self.transform(*self._sample(index, image), self._partners(index))
        height, width = image.pixels.shape[:2]
        geometry = self.transform.geometry(width, height)
        if geometry is not None and image.scale != (1.0, 1.0):
            geometry = through_reduction(geometry, size, image.scale)
        target.update(
            boxes=torch.from_numpy(sample.boxes),
            labels=torch.from_numpy(sample.labels),
            difficult=torch.from_numpy(sample.difficult),
            geometry=geometry,
        )
        return sample.image, target
