from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prodet.annotations.schema import VocDataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset, split_ids
from prodet.datasets.geometry import ResizeGeometry, boxes_to_original

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def test_untransformed_items_are_the_decoded_images_and_records(tiny_voc_pkl: Path) -> None:
    ds = DetectionDataset(tiny_voc_pkl, "trainval")
    assert len(ds) == 5 and ds.classes[0] == "__background__"
    for index, record in enumerate(ds.records):
        image, target = ds[index]
        assert image.dtype == torch.float32 and image.shape == (3, record.height, record.width)
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert target["image_id"] == record.image_id
        assert target["orig_size"] == (record.height, record.width)
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (
            len(record.labels),
            4,
        )
        np.testing.assert_array_equal(target["boxes"].numpy(), record.boxes)
        assert target["labels"].dtype == torch.int64 and target["difficult"].dtype == torch.bool
        assert target["geometry"] == ResizeGeometry.identity(record.width, record.height)
    rgb = np.asarray(Image.open(ds.image_path(0)), dtype=np.float32) / 255
    np.testing.assert_allclose(ds[0][0].permute(1, 2, 0).numpy(), rgb, atol=1e-6)


def test_eval_letterbox_targets_map_back_to_original_pixels(tiny_voc_pkl: Path) -> None:
    transform = build_transform("eval", size=96, mean=MEAN, std=STD, resize_mode="letterbox")
    ds = DetectionDataset(tiny_voc_pkl, "trainval", transform=transform)
    for index, record in enumerate(ds.records):
        image, target = ds[index]
        assert image.shape == (3, 96, 96)
        back = boxes_to_original(target["boxes"].numpy(), target["geometry"])
        np.testing.assert_allclose(back, record.boxes, atol=1e-3)
        np.testing.assert_array_equal(target["labels"].numpy(), record.labels)
        np.testing.assert_array_equal(target["difficult"].numpy(), record.difficult)


def test_ssd_preset_items_including_the_empty_image(tiny_voc_pkl: Path) -> None:
    transform = build_transform("ssd", size=64, mean=MEAN, std=STD, pca_color=True, seed=0)
    ds = DetectionDataset(tiny_voc_pkl, "trainval", transform=transform)
    empty = [r.image_id for r in ds.records].index("d_empty")
    for _ in range(5):
        for index in range(len(ds)):
            image, target = ds[index]
            assert image.shape == (3, 64, 64)
            assert target["geometry"] is None
            boxes = target["boxes"]
            assert boxes.shape == (len(target["labels"]), 4) == (len(target["difficult"]), 4)
            assert ((boxes >= 0) & (boxes <= 64)).all()
        assert ds[empty][1]["boxes"].shape == (0, 4)


def test_preloaded_cache_gives_the_same_items_and_is_read_only(tiny_voc_pkl: Path) -> None:
    plain = DetectionDataset(tiny_voc_pkl, "trainval")
    cached = DetectionDataset(tiny_voc_pkl, "trainval", cache_mb=1.0)
    assert cached.preload() and cached.preload()
    for index in range(len(plain)):
        torch.testing.assert_close(cached[index][0], plain[index][0])
    assert not cached.source(0).pixels.flags.writeable
    small = DetectionDataset(tiny_voc_pkl, "trainval", cache_mb=1e-4)
    assert not small.preload()  # over budget: decoded per item, still correct
    torch.testing.assert_close(small[0][0], plain[0][0])
    with pytest.raises(ValueError, match="cache_mb must be >= 0"):
        DetectionDataset(tiny_voc_pkl, "trainval", cache_mb=-1)


def test_an_empty_split_preloads_nothing_and_says_nothing(
    tiny_voc_pkl: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = DetectionDataset(tiny_voc_pkl, ids=[], cache_mb=1.0)  # e.g. val_split none
    with caplog.at_level("INFO", logger="prodet.datasets.detection_dataset"):
        assert len(empty) == 0 and not empty.preload()
    assert caplog.text == ""


def test_mosaic_items_mix_other_images_of_the_split(tiny_voc_pkl: Path) -> None:
    transform = build_transform("light", size=64, mean=MEAN, std=STD, mosaic=1.0, seed=0)
    ds = DetectionDataset(tiny_voc_pkl, "trainval", transform=transform, cache_mb=1.0)
    ds.preload()
    labels_seen = set()
    for _ in range(4):
        for index in range(len(ds)):
            image, target = ds[index]
            assert image.shape == (3, 64, 64)
            assert ((target["boxes"] >= 0) & (target["boxes"] <= 64)).all()
            labels_seen.add(len(target["labels"]))
    own = {len(r.labels) for r in ds.records}
    assert max(labels_seen) > max(own)  # some sample carries its partners' boxes too


def test_missing_split_lists_the_available_ones(tiny_voc: VocDataset) -> None:
    with pytest.raises(ValueError, match=r"unknown split 'val'; this dataset has: test, trainval"):
        DetectionDataset(tiny_voc, "val")
    with pytest.raises(ValueError, match="split_ids"):
        DetectionDataset(tiny_voc, "train")
    with pytest.raises(ValueError, match="give a split name or an explicit ids list"):
        DetectionDataset(tiny_voc)


def test_explicit_ids_from_split_ids(tiny_voc: VocDataset) -> None:
    train, val = split_ids(tiny_voc.splits["trainval"], 0.4, seed=0)
    assert len(val) == 2 and len(train) == 3
    ds = DetectionDataset(tiny_voc, ids=val)
    assert [r.image_id for r in ds.records] == val and ds.split is None
    with pytest.raises(ValueError, match=r"not in the dataset, e\.g\. 'zzz'"):
        DetectionDataset(tiny_voc, ids=["a_rgb", "zzz"])


def test_split_ids_is_deterministic_disjoint_and_order_independent() -> None:
    ids = [f"img{i:04d}" for i in range(200)]
    train, val = split_ids(ids, 0.1, seed=3)
    assert len(val) == 20 and len(train) == 180
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(ids)
    assert train == [i for i in ids if i in set(train)]  # original order kept
    assert split_ids(list(reversed(ids)), 0.1, seed=3)[1] == list(reversed(val))
    assert split_ids(ids, 0.1, seed=3) == (train, val)
    assert split_ids(ids, 0.1, seed=4)[1] != val
    assert split_ids(["a", "b"], 0.01, seed=0)[1] in (["a"], ["b"])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_ids(ids, 1.0, seed=0)
    with pytest.raises(ValueError, match="duplicates"):
        split_ids(["a", "a", "b"], 0.5, seed=0)


def test_image_size_disagreeing_with_its_record_is_reported(tiny_voc: VocDataset) -> None:
    wrong = dataclasses.replace(tiny_voc.records[0], width=tiny_voc.records[0].width + 1)
    voc = dataclasses.replace(tiny_voc, records=(wrong, *tiny_voc.records[1:]))
    ds = DetectionDataset(voc, "trainval")
    with pytest.raises(ValueError, match="re-run `prodet convert`"):
        ds[0]
