"""Training on big JPEGs: reduced decoding keeps boxes in original pixels; the disk cache
is reused across runs and rebuilt, never trusted, when it is corrupt or not this one's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prodet.annotations.schema import (
    BACKGROUND,
    FORMAT_VERSION,
    ImageRecord,
    VocDataset,
    compute_content_hash,
)
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.geometry import boxes_to_original
from prodet.datasets.image_cache import DiskCache, decoded_shape
from tests.annotations.jpeg_samples import encode, scene

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
# (id, width, height, white square): 1601 x 1203 leaves partial DCT blocks at 1/8.
PHOTOS = (
    ("p1", 1600, 1200, (400, 300, 800, 700)),
    ("p2", 1601, 1203, (900, 500, 1300, 1000)),
    ("p3", 1200, 1600, (200, 800, 700, 1300)),
)


def photos_voc(root: Path, classes: tuple[str, ...] = (BACKGROUND, "square")) -> VocDataset:
    """Three JPEG photos, each with one white square annotated as class 1."""
    records = []
    for image_id, width, height, square in PHOTOS:
        path = root / "JPEGImages" / f"{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(scene(width, height, square), quality=92))
        records.append(
            ImageRecord(
                image_id=image_id,
                image_path=f"JPEGImages/{image_id}.jpg",
                width=width,
                height=height,
                image_format="JPEG",
                boxes=np.asarray([square], dtype=np.float32),
                labels=np.asarray([1], dtype=np.int64),
                difficult=np.asarray([False]),
                xml_sha256="0" * 64,
            )
        )
    splits = {"trainval": tuple(r.image_id for r in records)}
    return VocDataset(
        format_version=FORMAT_VERSION,
        root=str(root),
        classes=classes,
        records=tuple(records),
        splits=splits,
        content_hash=compute_content_hash(classes, tuple(records), splits),
    )


@pytest.fixture
def photos(tmp_path: Path) -> VocDataset:
    return photos_voc(tmp_path / "photos")


def _eval(mode: str, size: int = 96):
    return build_transform("eval", size=size, mean=MEAN, std=STD, resize_mode=mode)


def _bright_centre(image: torch.Tensor, half: float = 4.0) -> np.ndarray:
    """A stand-in detector: a box around the centre of brightness of the model input.

    Brightness is linear in the pixels (no threshold), so the box moves with the content
    and only with it: a pixel of error in the geometry moves it by about a pixel.
    """
    weight = (image.mean(0) + 3.0).numpy()
    ys, xs = np.mgrid[0 : weight.shape[0], 0 : weight.shape[1]] + 0.5
    cx, cy = (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()
    return np.asarray([[cx - half, cy - half, cx + half, cy + half]], np.float64)


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_eval_boxes_map_back_within_a_pixel_whether_decoded_full_or_reduced(
    photos: VocDataset, mode: str
) -> None:
    full = DetectionDataset(photos, "trainval", transform=_eval(mode), fast_jpeg=False)
    fast = DetectionDataset(photos, "trainval", transform=_eval(mode))
    assert full.min_sides is None and fast.min_sides == ((96, 96) if mode == "stretch" else (0, 96))
    for index, record in enumerate(fast.records):
        reduced = fast.source(index).pixels.shape[:2]  # 1/8 still leaves >= 96 px
        assert reduced == (round(record.height / 8), round(record.width / 8))
        assert fast.source(index).scale == (reduced[1] / record.width, reduced[0] / record.height)
        assert full.source(index).scale == (1.0, 1.0)
        answers = []
        for dataset in (full, fast):
            image, target = dataset[index]
            assert target["orig_size"] == (record.height, record.width)
            assert target["geometry"].original == (record.width, record.height)
            # the targets: the record's boxes, through the input and back
            back = boxes_to_original(target["boxes"].numpy(), target["geometry"])
            np.testing.assert_allclose(back, record.boxes, atol=1e-2)
            answers.append(boxes_to_original(_bright_centre(image), target["geometry"]))
        np.testing.assert_allclose(answers[1], answers[0], atol=1.0)


def test_random_presets_decode_at_twice_the_input_size(photos: VocDataset) -> None:
    transform = build_transform("ssd", size=96, mean=MEAN, std=STD, seed=0)
    dataset = DetectionDataset(photos, "trainval", transform=transform)
    assert dataset.min_sides == (192, 192)
    assert dataset.source(0).pixels.shape == (300, 400, 3)  # 1/4: 300 >= 192 > 150
    image, target = dataset[0]
    assert image.shape == (3, 96, 96) and target["geometry"] is None
    assert ((target["boxes"] >= 0) & (target["boxes"] <= 96)).all()


def test_ram_cache_budgets_the_reduced_size(photos: VocDataset) -> None:
    # 3 reduced images take ~0.2 MB; in full they would take 17 MB
    dataset = DetectionDataset(photos, "trainval", transform=_eval("stretch"), cache_mb=1.0)
    assert sum(np.prod(decoded_shape(r, dataset.min_sides)) for r in photos.records) < 2**20
    assert dataset.preload()
    plain = DetectionDataset(photos, "trainval", transform=_eval("stretch"))
    for index in range(len(dataset)):
        torch.testing.assert_close(dataset[index][0], plain[index][0])
    assert not DetectionDataset(
        photos, "trainval", transform=_eval("stretch"), cache="none"
    ).preload()


def _disk(photos: VocDataset, root: Path, **kwargs: object) -> DetectionDataset:
    return DetectionDataset(
        photos, "trainval", transform=_eval("stretch"), cache="disk", cache_dir=root, **kwargs
    )


def test_disk_cache_is_filled_once_and_reused_by_the_next_run(
    photos: VocDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _disk(photos, tmp_path / "cache")
    items = [first[i][0] for i in range(len(first))]
    entries = sorted((tmp_path / "cache").glob("*/*.img"))
    assert len(entries) == 3
    assert entries[0].parent.name == f"{photos.content_hash[:32]}-96x96-composite"

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded although the disk cache holds the image")

    monkeypatch.setattr("prodet.datasets.detection_dataset.decode_source", no_decoding)
    second = _disk(photos, tmp_path / "cache")
    for index, image in enumerate(items):
        torch.testing.assert_close(second[index][0], image)


def _damage(entry: Path, how: str, other: Path) -> None:
    data = bytearray(entry.read_bytes())
    if how == "flipped pixel":
        data[-10] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif how == "truncated":
        entry.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "garbage":
        entry.write_bytes(b"\x00" * 100)
    else:  # an entry of another dataset or another size, copied in
        shutil.copyfile(other, entry)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("flipped pixel", "pixel checksum mismatch"),
        ("truncated", "pixel bytes for a"),
        ("garbage", "not a prodet image-cache entry"),
        ("other dataset", "dataset_hash is"),
        ("other size", "min_sides is [64, 64], expected [96, 96]"),
    ],
)
def test_untrusted_entries_are_rebuilt(
    photos: VocDataset, tmp_path: Path, how: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cache"
    dataset = _disk(photos, root)
    expected = dataset[0][0]
    assert dataset.disk_cache is not None
    entry = dataset.disk_cache.entry(0)
    if how == "other dataset":
        renamed = photos_voc(tmp_path / "renamed", classes=(BACKGROUND, "box"))
        donor = _disk(renamed, root)
    else:
        transform = _eval("stretch", 64)
        donor = DetectionDataset(
            photos, "trainval", transform=transform, cache="disk", cache_dir=root
        )
    donor[0]
    assert donor.disk_cache is not None and donor.disk_cache.folder != dataset.disk_cache.folder
    _damage(entry, how, donor.disk_cache.entry(0))

    again = _disk(photos, root)
    torch.testing.assert_close(again[0][0], expected)  # decoded again, not read
    assert reason in caplog.text
    assert again.disk_cache is not None
    rewritten = again.disk_cache.load(0, photos.records[0], again.image_path(0))
    assert rewritten is not None  # and written back whole


def test_an_image_edited_since_is_decoded_again(photos: VocDataset, tmp_path: Path) -> None:
    dataset = _disk(photos, tmp_path / "cache")
    dataset[0]
    path = dataset.image_path(0)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert dataset.disk_cache is not None
    assert dataset.disk_cache.load(0, photos.records[0], path) is None
    assert (
        DiskCache(
            tmp_path / "cache", dataset_hash=photos.content_hash, min_sides=(96, 96), alpha="drop"
        ).folder
        != dataset.disk_cache.folder
    )


def test_bad_cache_settings_are_refused(photos: VocDataset) -> None:
    with pytest.raises(ValueError, match="cache must be one of ram, disk, none"):
        DetectionDataset(photos, "trainval", cache="ssd")
