"""Fixtures: a tiny VOC-like dataset of synthetic images, pickled like `prodet convert` does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodet.annotations.pickle_store import dump_dataset
from prodet.annotations.schema import (
    BACKGROUND,
    FORMAT_VERSION,
    ImageRecord,
    VocDataset,
    compute_content_hash,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSES = (BACKGROUND, "cat", "dog", "fox")

RecordSpec = tuple[str, str, Image.Image, list[list[float]], list[int], list[bool]]


def _noise(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _specs() -> list[RecordSpec]:
    """(image_id, relative path, image, boxes, labels, difficult) for six images."""
    palette_img = Image.fromarray(_noise(40, 48, 1, 3)[:, :, 0], mode="L").convert("P")
    sixteen = (_noise(20, 30, 1, 4)[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    return [
        ("a_rgb", "JPEGImages/a_rgb.png", Image.fromarray(_noise(48, 64, 3, 0)),
         [[4, 6, 30, 40], [33.5, 2, 63, 47.5]], [1, 2], [False, True]),
        ("b_rgba", "JPEGImages/b_rgba.jpg", Image.fromarray(_noise(60, 40, 4, 1), mode="RGBA"),
         [[0, 0, 40, 60]], [3], [False]),
        ("c_gray", "JPEGImages/c_gray.png", Image.fromarray(_noise(50, 50, 1, 2)[:, :, 0]),
         [[10, 10, 20, 45]], [1], [True]),
        ("d_empty", "JPEGImages/d_empty.png", Image.fromarray(_noise(32, 32, 3, 5)), [], [], []),
        ("e_palette", "JPEGImages/e_palette.png", palette_img,
         [[1, 1, 10, 10], [20, 5, 47, 39], [5, 20, 15, 38]], [2, 2, 3], [False, False, True]),
        ("f_16bit", "JPEGImages/f_16bit.png", Image.fromarray(sixteen),
         [[2, 3, 28, 19]], [1], [False]),
    ]  # fmt: skip


def build_voc(
    root: Path, specs: list[RecordSpec], splits: dict[str, tuple[str, ...]]
) -> VocDataset:
    """Write the images under ``root`` and return the matching ``VocDataset``."""
    records = []
    for image_id, rel, image, boxes, labels, difficult in specs:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
        records.append(
            ImageRecord(
                image_id=image_id,
                image_path=rel,
                width=image.width,
                height=image.height,
                image_format="PNG",
                boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.asarray(labels, dtype=np.int64),
                difficult=np.asarray(difficult, dtype=bool),
                xml_sha256="0" * 64,
            )
        )
    ordered = tuple(sorted(records, key=lambda r: r.image_id))
    return VocDataset(
        format_version=FORMAT_VERSION,
        root=str(root),
        classes=CLASSES,
        records=ordered,
        splits=splits,
        content_hash=compute_content_hash(CLASSES, ordered, splits),
    )


@pytest.fixture
def tiny_voc(tmp_path: Path) -> VocDataset:
    """Six images of different modes and sizes; splits ``trainval`` (5) and ``test`` (1)."""
    splits = {
        "trainval": ("a_rgb", "b_rgba", "c_gray", "d_empty", "e_palette"),
        "test": ("f_16bit",),
    }
    return build_voc(tmp_path / "voc", _specs(), splits)


@pytest.fixture
def tiny_voc_pkl(tiny_voc: VocDataset, tmp_path: Path) -> Path:
    """``tiny_voc`` pickled with ``dump_dataset``."""
    path = tmp_path / "tiny.pkl"
    dump_dataset(tiny_voc, path)
    return path


@pytest.fixture
def repeated_voc(tmp_path: Path) -> Callable[[int], VocDataset]:
    """Factory: ``n`` records that all point at the same image with the same boxes."""

    def make(n: int) -> VocDataset:
        image = Image.fromarray(_noise(40, 60, 3, 7))
        specs: list[RecordSpec] = [
            (f"r{i:03d}", "JPEGImages/same.png", image, [[5, 5, 30, 30], [25, 10, 58, 38]],
             [1, 2], [False, False])
            for i in range(n)
        ]  # fmt: skip
        ids = tuple(s[0] for s in specs)
        return build_voc(tmp_path / "repeated", specs, {"trainval": ids})

    return make
