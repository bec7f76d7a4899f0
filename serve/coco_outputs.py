"""``prodet predict --format coco``: a COCO results file and its image-info companion.

While the run goes, each image's record (the ``json`` format's) is written to
``OUT/coco_parts/KEY.json``, the image's marker (see ``serve.prediction_outputs``). Once
every image is done, one streaming pass over a fresh walk of the inputs assembles, each
written atomically:

* ``OUT/coco_results.json``: ``[{"image_id", "category_id", "bbox": [x, y, w, h],
  "score"}, ...]``, what pycocotools' ``COCO.loadRes`` and ``COCOeval`` take;
* ``OUT/coco_image_info.json``: ``{"info", "images": [{"id", "file_name", "width",
  "height"}], "categories": [{"id", "name"}]}``, the shape of COCO's ``image_info``
  files: ``COCO("coco_image_info.json").loadRes("coco_results.json")`` joins them.

Image ids are 1-based positions in the walk, counting every image (also one that failed,
so that a failure does not shift the ids of the images after it). The walk's order is
fixed, so the files of a resumed run equal those of a clean one; adding or removing input
images renumbers the images after them. ``file_name`` is the image's path relative to the
run's root (``serve.image_source``). Category ids are the model's class indices (``1..K-1``;
``0`` is the background), as ``annotations.coco`` numbers a dataset's. Boxes are in pixels
of the original, EXIF-oriented image, as in the record, ``x, y`` its top-left corner;
``width``/``height`` are that image's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from prodet.serve.image_source import ImageInput
from prodet.serve.predict import ImagePrediction
from prodet.serve.prediction_outputs import OutputFolder, PredictionWriter

logger = logging.getLogger(__name__)

PARTS_DIR = "coco_parts"
RESULTS_FILE = "coco_results.json"
IMAGE_INFO_FILE = "coco_image_info.json"


class CocoWriter(PredictionWriter):
    """Per-image parts while running, the two COCO files at the end."""

    def __init__(
        self, folder: OutputFolder, *, classes: Sequence[str], info: dict[str, Any]
    ) -> None:
        super().__init__(folder)
        self.categories = [{"id": i, "name": name} for i, name in enumerate(classes) if i > 0]
        self.info = info

    def marker(self, item: ImageInput) -> Path:
        return self.folder.root / PARTS_DIR / f"{item.key}.json"

    def shown(self, item: ImageInput) -> Path:
        return self.folder.root / RESULTS_FILE

    def write(self, item: ImageInput, prediction: ImagePrediction) -> None:
        data = json.dumps(prediction.record, separators=(",", ":")).encode("utf-8")
        self._write_all([(self.marker(item), data)])

    def finish(self, items: Iterable[ImageInput]) -> None:
        root = self.folder.root
        with (
            self.folder.space_checked(),
            _AtomicText(root / RESULTS_FILE, self.folder.temp) as results,
            _AtomicText(root / IMAGE_INFO_FILE, self.folder.temp) as info,
        ):
            head = json.dumps({"info": self.info})[:-1]
            info.write(head + ', "images": [')
            results.write("[")
            images = detections = 0
            for image_id, item in enumerate(items, start=1):
                record = self._read_part(item)
                if record is None:
                    continue
                entry = {
                    "id": image_id,
                    "file_name": item.name,
                    "width": record["width"],
                    "height": record["height"],
                }
                info.write(("\n" if images == 0 else ",\n") + json.dumps(entry))
                images += 1
                for detection in record["detections"]:
                    results.write(
                        ("\n" if detections == 0 else ",\n") + _result(image_id, detection)
                    )
                    detections += 1
            results.write("\n]\n")
            info.write(f'\n], "categories": {json.dumps(self.categories)}}}\n')
        logger.info(
            "wrote %s and %s: %d images, %d detections",
            RESULTS_FILE,
            IMAGE_INFO_FILE,
            images,
            detections,
        )

    def _read_part(self, item: ImageInput) -> dict[str, Any] | None:
        if item.problem is not None:
            return None
        try:
            with open(self.marker(item), encoding="utf-8") as fh:
                record: dict[str, Any] = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("left out of the COCO files: %s: %s", self.marker(item), exc)
            return None
        return record


def _result(image_id: int, detection: dict[str, Any]) -> str:
    box = detection["box"]
    x1, y1 = box["x1"], box["y1"]
    return json.dumps(
        {
            "image_id": image_id,
            "category_id": detection["class_id"],
            "bbox": [x1, y1, round(box["x2"] - x1, 2), round(box["y2"] - y1, 2)],
            "score": detection["score"],
        }
    )


class _AtomicText:
    """A text file written in pieces into ``temp_dir`` and renamed to ``path`` on a clean
    exit (fsynced first); removed on any error."""

    def __init__(self, path: Path, temp_dir: Path) -> None:
        self.path = path
        self.temp = temp_dir / f".{path.name}.tmp"
        self._file: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        self._file = open(self.temp, "w", encoding="utf-8")  # closed in __exit__
        return self._file

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._file is None:
            raise RuntimeError("_AtomicText left without being entered")
        try:
            if exc_type is None:
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            if exc_type is None:
                os.replace(self.temp, self.path)
        finally:
            self.temp.unlink(missing_ok=True)
