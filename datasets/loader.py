"""Batching and reproducible seeding for detection data loaders.

Reproducibility: ``build_loader(..., seed=s)`` gives the loader a ``torch.Generator``
seeded with ``s``. Each pass over the loader draws a base seed from it; with worker
processes, worker ``k`` gets ``base + k`` and ``seed_worker`` seeds ``random``,
``numpy``, ``torch`` and the dataset's augmentation pipeline from it. Albumentations 2.x
keeps its own generators and ignores the global seeds, so the dataset must be reseeded
explicitly; without that every worker would replay the same augmentations. With
``num_workers=0`` the loader reseeds the dataset itself at the start of each pass
(global ``random``/``numpy`` state of the main process is left alone). Two loaders built
with the same seed, dataset and settings therefore yield identical batches, epoch after
epoch; the batches differ between ``num_workers`` settings.

A dataset takes part in seeding by having a ``reseed(seed: int)`` method (as
``DetectionDataset`` does); a ``torch.utils.data.Subset`` is looked through.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, get_worker_info

if TYPE_CHECKING:
    # The iterator DataLoader.__iter__ returns (torch names it only privately).
    from torch.utils.data.dataloader import _BaseDataLoaderIter

Batch = tuple[torch.Tensor | list[torch.Tensor], list[dict[str, Any]]]


def collate_detection(samples: list[tuple[torch.Tensor, dict[str, Any]]]) -> Batch:
    """Batch ``(image, target)`` samples.

    Args:
        samples: images float32 ``[3, H, W]`` and target dicts.

    Returns:
        ``(images, targets)``: images stacked to ``[B, 3, H, W]`` when all have the same
        size, else the list of ``[3, H_i, W_i]`` tensors; targets as a list of dicts (box
        counts differ per image).
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    images = [image for image, _ in samples]
    targets = [target for _, target in samples]
    if all(image.shape == images[0].shape for image in images):
        return torch.stack(images), targets
    return images, targets


def reseed_dataset(dataset: Dataset[Any], seed: int) -> None:
    """Call ``dataset.reseed(seed)`` if it has one, looking through ``Subset`` wrappers."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    reseed = getattr(dataset, "reseed", None)
    if callable(reseed):
        reseed(seed)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed everything in a worker from torch's per-worker seed.

    torch sets the worker's seed to ``base_seed + worker_id``, where the base seed comes
    from the loader's generator; ``torch.initial_seed()`` returns it.
    """
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    info = get_worker_info()
    if info is not None:
        reseed_dataset(info.dataset, seed)


class SeededDataLoader(DataLoader):
    """A ``DataLoader`` that also reseeds the dataset in single-process mode.

    Worker processes are seeded by ``seed_worker``; with ``num_workers=0`` no worker
    exists, so each pass draws a seed from the loader's generator and reseeds the
    dataset before iterating.
    """

    def __iter__(self) -> _BaseDataLoaderIter:
        if self.num_workers == 0:
            draw = torch.randint(0, 2**62, (), generator=self.generator)
            reseed_dataset(self.dataset, int(draw))
        return super().__iter__()


def build_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    sampler: Sampler[int] | None = None,
) -> DataLoader:
    """A detection ``DataLoader`` with ``collate_detection`` and ``seed_worker``.

    Args:
        dataset: e.g. a ``DetectionDataset``.
        batch_size: images per batch.
        shuffle: reshuffle each pass (training) or keep the dataset order (evaluation).
        num_workers: worker processes; 0 loads in the calling process.
        seed: seeds the shuffle and all augmentation randomness; None draws fresh seeds.
        drop_last: drop a final incomplete batch.
        pin_memory: page-locked batches for faster host-to-GPU copies.
        persistent_workers: keep workers alive between passes (needs ``num_workers > 0``).
        sampler: e.g. a ``DistributedSampler`` shard; replaces ``shuffle``.

    Returns:
        A loader yielding ``(images, targets)`` (see ``collate_detection``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if persistent_workers and num_workers == 0:
        raise ValueError("persistent_workers needs num_workers > 0")
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return SeededDataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_detection,
        worker_init_fn=seed_worker,
        generator=generator,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers,
    )
