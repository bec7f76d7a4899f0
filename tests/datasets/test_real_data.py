"""One pass over the shared real commodity data (RGBA PNGs named .jpg) and raccoon JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prodet.annotations.convert import convert_folder
from prodet.annotations.image_decode import decode_image_file
from prodet.annotations.image_header import read_pillow_header
from prodet.annotations.pickle_store import dump_dataset
from prodet.annotations.schema import VocDataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.datasets.geometry import boxes_to_original
from prodet.datasets.loader import build_loader

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _convert(name: str, tmp_path: Path) -> Path:
    folder = SHARED_DATA / name
    if not (folder / "Annotations").is_dir():
        pytest.skip(f"shared data not found at {folder} (expected ../shared/data beside the repo)")
    result = convert_folder(folder, workers=1)
    assert result.dataset is not None, result.problems
    path = tmp_path / f"{name}.pkl"
    dump_dataset(result.dataset, path)
    return path


def test_commodity_ssd_loader_and_eval_round_trip(tmp_path: Path) -> None:
    pkl = _convert("commodity_voc", tmp_path)
    transform = build_transform("ssd", size=128, mean=MEAN, std=STD, pca_color=True)
    train = DetectionDataset(pkl, "trainval", transform=transform)
    num_classes = len(train.classes)
    seen = 0
    for images, targets in build_loader(train, batch_size=8, shuffle=True, num_workers=2, seed=0):
        assert isinstance(images, torch.Tensor) and images.shape[1:] == (3, 128, 128)
        for target in targets:
            boxes, labels = target["boxes"], target["labels"]
            assert boxes.shape == (len(labels), 4) and ((boxes >= 0) & (boxes <= 128)).all()
            assert ((labels >= 1) & (labels < num_classes)).all()
        seen += len(targets)
    assert seen == len(train) == 71

    transform = build_transform("eval", size=160, mean=MEAN, std=STD, resize_mode="letterbox")
    test = DetectionDataset(pkl, "test", transform=transform)
    for index, record in enumerate(test.records):
        _, target = test[index]
        back = boxes_to_original(target["boxes"].numpy(), target["geometry"])
        np.testing.assert_allclose(back, record.boxes, atol=1e-2)


def test_raccoon_grayscale_jpegs_decode_to_rgb() -> None:
    folder = SHARED_DATA / "raccoon_voc" / "JPEGImages"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder} (expected ../shared/data beside the repo)")
    gray = [p for p in sorted(folder.iterdir()) if read_pillow_header(p).mode == "L"]
    assert gray, "the raccoon set is expected to hold grayscale JPEGs"
    for path in gray:
        image = decode_image_file(path)
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def test_commodity_rgba_images_have_records_sizes(tmp_path: Path) -> None:
    voc: VocDataset = DetectionDataset(_convert("commodity_voc", tmp_path), "test").voc
    record = voc.records[0]
    image = decode_image_file(Path(voc.root) / record.image_path)
    assert record.image_path.endswith(".jpg") and record.image_format == "PNG"
    assert image.shape == (record.height, record.width, 3)
