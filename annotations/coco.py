"""Write a ``VocDataset`` as COCO detection JSON (loadable by pycocotools).

Boxes become ``bbox = [x1, y1, x2 - x1, y2 - y1]`` in the same 0-based continuous
pixels as the dataset; category ids are the dataset's label indices (1..K, no
background); image ids are 1-based positions in ``dataset.records``. VOC's
``difficult`` flag is kept as an extra ``difficult`` field (COCO has none).
"""

from __future__ import annotations

import json
import os
from typing import Any

from prodet.annotations.atomic import atomic_write_bytes
from prodet.annotations.schema import VocDataset


def to_coco(dataset: VocDataset, split: str | None = None) -> dict[str, Any]:
    """Build the COCO dict for the whole dataset or one split."""
    records = dataset.records if split is None else tuple(dataset.split_records(split))
    position = {r.image_id: i + 1 for i, r in enumerate(dataset.records)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for rec in records:
        image_id = position[rec.image_id]
        images.append(
            {
                "id": image_id,
                "file_name": rec.image_path,
                "width": rec.width,
                "height": rec.height,
                "voc_id": rec.image_id,
            }
        )
        for box, label, difficult in zip(
            rec.boxes.tolist(), rec.labels.tolist(), rec.difficult.tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "difficult": bool(difficult),
                }
            )
    categories = [{"id": i, "name": name} for i, name in enumerate(dataset.classes) if i > 0]
    return {
        "info": {"description": "prodet export", "content_hash": dataset.content_hash},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco(dataset: VocDataset, path: str | os.PathLike[str], split: str | None = None) -> None:
    """Write ``to_coco(dataset, split)`` to ``path`` atomically."""
    payload = json.dumps(to_coco(dataset, split), ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(path, payload)
