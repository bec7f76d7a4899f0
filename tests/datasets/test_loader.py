from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

from prodet.annotations.schema import VocDataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.loader import build_loader, collate_detection

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _ssd_dataset(voc: VocDataset | Path) -> DetectionDataset:
    transform = build_transform("ssd", size=48, mean=MEAN, std=STD)
    return DetectionDataset(voc, "trainval", transform=transform)


def _epochs(loader: torch.utils.data.DataLoader, epochs: int = 2) -> list[Any]:
    batches = []
    for _ in range(epochs):
        for images, targets in loader:
            batches.append((images, [(t["image_id"], t["boxes"], t["labels"]) for t in targets]))
    return batches


def _assert_same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for (images_a, targets_a), (images_b, targets_b) in zip(a, b, strict=True):
        assert torch.equal(images_a, images_b)
        for (id_a, boxes_a, labels_a), (id_b, boxes_b, labels_b) in zip(
            targets_a, targets_b, strict=True
        ):
            assert (
                id_a == id_b and torch.equal(boxes_a, boxes_b) and torch.equal(labels_a, labels_b)
            )


def test_collate_stacks_equal_sizes_and_lists_targets() -> None:
    target = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    images, targets = collate_detection(
        [(torch.ones(3, 4, 5), target), (torch.zeros(3, 4, 5), target)]
    )
    assert isinstance(images, torch.Tensor) and images.shape == (2, 3, 4, 5)
    assert images[0].sum() == 60 and targets == [target, target]
    mixed, _ = collate_detection([(torch.ones(3, 4, 5), target), (torch.ones(3, 6, 5), target)])
    assert isinstance(mixed, list) and [m.shape[1] for m in mixed] == [4, 6]
    with pytest.raises(ValueError, match="empty batch"):
        collate_detection([])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_gives_identical_batches(tiny_voc_pkl: Path, num_workers: int) -> None:
    def run(seed: int) -> list[Any]:
        loader = build_loader(
            _ssd_dataset(tiny_voc_pkl),
            batch_size=2,
            shuffle=True,
            num_workers=num_workers,
            seed=seed,
        )
        return _epochs(loader)

    first, again, other = run(11), run(11), run(12)
    assert len(first) == 6  # 2 epochs x 3 batches of the 5 trainval images
    _assert_same(first, again)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    assert not all(torch.equal(first[i][0], first[i + 3][0]) for i in range(3))  # epochs differ


def test_workers_do_not_replay_each_others_augmentations(
    repeated_voc: Callable[[int], VocDataset],
) -> None:
    """All items are the same image: only per-worker reseeding makes them differ."""
    ds = _ssd_dataset(repeated_voc(8))
    loader = build_loader(ds, batch_size=1, shuffle=False, num_workers=2, seed=0)
    images = [batch[0] for batch in loader]  # worker 0 yields items 0, 2, ..., worker 1 the rest
    assert not torch.equal(images[0], images[1])
    assert len({img.numpy().tobytes() for img in images}) == len(images) == 8


class _GlobalRandomness(Dataset[tuple[torch.Tensor, dict[str, Any]]]):
    """Items drawn from the global ``random``, ``numpy`` and ``torch`` generators."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        values = [random.random(), float(np.random.rand()), float(torch.rand(()))]
        return torch.tensor(values), {"index": index}


def test_worker_init_seeds_global_generators() -> None:
    def run(seed: int) -> torch.Tensor:
        loader = build_loader(
            _GlobalRandomness(), batch_size=1, shuffle=False, num_workers=2, seed=seed
        )
        return torch.cat([images for images, _ in loader])

    first = run(5)
    assert torch.equal(first, run(5))
    assert not torch.equal(first, run(6))
    assert not torch.equal(first[0], first[1])  # the two workers got different seeds


def test_subset_is_reseeded_through(tiny_voc: VocDataset) -> None:
    subset = Subset(_ssd_dataset(tiny_voc), [0, 1, 2])
    batches = [_epochs(build_loader(subset, batch_size=3, shuffle=False, seed=1)) for _ in range(2)]
    _assert_same(*batches)


def test_invalid_loader_arguments(tiny_voc: VocDataset) -> None:
    ds = _ssd_dataset(tiny_voc)
    with pytest.raises(ValueError, match="batch_size"):
        build_loader(ds, batch_size=0, shuffle=False)
    with pytest.raises(ValueError, match="persistent_workers needs num_workers > 0"):
        build_loader(ds, batch_size=1, shuffle=False, persistent_workers=True)
