"""COCO detection JSON of a dataset's ground truth: the one builder, loadable by pycocotools.

``coco_ground_truth`` builds it from per-image arrays; ``prodet convert --coco``
(``write_coco``) and the evaluation's COCO metrics (``detection.metrics_coco``) both call
it, so the file a user scores against and the numbers prodet reports agree. Conventions:

* ``bbox = [x1, y1, x2 - x1, y2 - y1]`` in the same 0-based continuous pixels as the
  dataset (``x1, y1, x2, y2``), ``area = w * h``;
* category ids are the dataset's label indices, 1..K-1 (0, the background, is no
  category);
* VOC's ``difficult`` flag is written twice: as ``iscrowd = 1``, the only ignore flag
  COCOeval honours (detections on such a box count neither way, as in VOC), and as an
  extra ``difficult`` field;
* a dataset's image ids are 1-based positions in ``dataset.records`` (``coco_image_ids``),
  the same in a split's file as in the whole dataset's, so a results file whose
  ``image_id`` values come from ``coco_image_ids`` joins either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from prodet.annotations.atomic import atomic_write_bytes
from prodet.annotations.schema import ImageRecord, VocDataset


def coco_ground_truth(
    ground_truth: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    images: Sequence[Mapping[str, Any]] | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The COCO dataset dict of per-image ground truth (conventions in the module doc).

    Args:
        ground_truth: per image ``{"boxes": float [N, 4] x1, y1, x2, y2, "labels": int [N]
            (1..K-1), "difficult": bool [N] (optional, default all False)}``; numpy
            arrays or lists.
        class_names: ``K`` names, ``class_names[0]`` the background.
        images: the COCO image entry of each ``ground_truth[i]``, at least ``{"id": int}``
            (``file_name``, ``width``, ``height``, ... are copied as given); default
            ``{"id": i + 1}``.
        info: the file's ``info`` entry; left out when None.

    Raises:
        ValueError: ``images`` and ``ground_truth`` differ in length or repeat an id, or a
            ground-truth entry's arrays disagree in length.
    """
    entries = [{"id": i + 1} for i in range(len(ground_truth))] if images is None else images
    if len(entries) != len(ground_truth):
        raise ValueError(
            f"need one image entry per ground-truth image; got {len(entries)} and "
            f"{len(ground_truth)}"
        )
    ids = [int(entry["id"]) for entry in entries]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids repeat; give each image its own id (coco_image_ids)")
    annotations: list[dict[str, Any]] = []
    for image_id, gt in zip(ids, ground_truth, strict=True):
        boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4).tolist()
        labels = np.asarray(gt["labels"]).reshape(-1).tolist()
        difficult = np.asarray(gt.get("difficult", [False] * len(boxes)), dtype=bool).tolist()
        if not len(boxes) == len(labels) == len(difficult):
            raise ValueError(
                f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels and "
                f"{len(difficult)} difficult flags; give one of each per object"
            )
        for (x1, y1, x2, y2), label, hard in zip(boxes, labels, difficult, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(hard),
                    "difficult": hard,
                }
            )
    coco: dict[str, Any] = {} if info is None else {"info": dict(info)}
    coco["images"] = [
        {**entry, "id": image_id} for entry, image_id in zip(entries, ids, strict=True)
    ]
    coco["annotations"] = annotations
    coco["categories"] = [{"id": i, "name": n} for i, n in enumerate(class_names) if i > 0]
    return coco


def coco_image_ids(dataset: VocDataset, image_ids: Sequence[str]) -> list[int]:
    """The COCO ids (1-based positions in ``dataset.records``) of the given record ids.

    Raises:
        ValueError: an id is not in the dataset.
    """
    index = dataset.record_index()
    unknown = [i for i in image_ids if i not in index]
    if unknown:
        raise ValueError(
            f"{len(unknown)} image id(s) not in the dataset, e.g. {unknown[0]!r}; "
            "evaluate records of this dataset"
        )
    return [index[i] + 1 for i in image_ids]


def to_coco(dataset: VocDataset, split: str | None = None) -> dict[str, Any]:
    """The COCO dict of the whole dataset or one split (images in split order)."""
    records = list(dataset.records) if split is None else dataset.split_records(split)
    ids = coco_image_ids(dataset, [r.image_id for r in records])
    return coco_ground_truth(
        [_ground_truth(r) for r in records],
        dataset.classes,
        images=[_image_entry(r, image_id) for r, image_id in zip(records, ids, strict=True)],
        info={"description": "prodet export", "content_hash": dataset.content_hash},
    )


def write_coco(dataset: VocDataset, path: str | os.PathLike[str], split: str | None = None) -> None:
    """Write ``to_coco(dataset, split)`` to ``path`` atomically."""
    payload = json.dumps(to_coco(dataset, split), ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(path, payload)


def _ground_truth(record: ImageRecord) -> dict[str, np.ndarray]:
    return {"boxes": record.boxes, "labels": record.labels, "difficult": record.difficult}


def _image_entry(record: ImageRecord, image_id: int) -> dict[str, Any]:
    return {
        "id": image_id,
        "file_name": record.image_path,
        "width": record.width,
        "height": record.height,
        "voc_id": record.image_id,
    }
