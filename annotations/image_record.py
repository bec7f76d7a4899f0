"""One annotated image of the pickled dataset (the box convention is in ``schema``).

It sits below both ``record_table`` (which builds these records from its columns) and
``schema`` (whose ``VocDataset`` holds them), so neither of those imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image.

    Attributes:
        image_id: the annotation's file stem, unique in the dataset.
        image_path: path of the image relative to ``VocDataset.root`` (POSIX separators).
        width, height: the real image size in pixels, read from the image file's header.
        image_format: the real format sniffed from the bytes (``"PNG"``, ``"JPEG"``, ...),
            whatever the file extension says.
        boxes: float32 ``[N, 4]``, ``x1, y1, x2, y2``, 0-based pixels (see ``schema``).
        labels: int64 ``[N]``, indices into ``VocDataset.classes`` (never 0).
        difficult: bool ``[N]``, VOC's ``<difficult>`` flag.
        xml_sha256: hex digest of the annotation file's bytes.
    """

    image_id: str
    image_path: str
    width: int
    height: int
    image_format: str
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    xml_sha256: str

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.boxes.shape != (n, 4) or self.boxes.dtype != np.float32:
            raise ValueError(
                f"ImageRecord {self.image_id!r}: boxes must be float32 [{n}, 4], "
                f"got {self.boxes.dtype} {list(self.boxes.shape)}"
            )
        if self.labels.dtype != np.int64 or self.difficult.shape != (n,):
            raise ValueError(
                f"ImageRecord {self.image_id!r}: labels must be int64 [N] and difficult bool [N]"
            )
        # min() over a Python list: a numpy reduction costs ~1 us per record, and records
        # hold a handful of labels.
        if n and min(self.labels.tolist()) < 1:
            raise ValueError(f"ImageRecord {self.image_id!r}: label 0 is background, not a box")

    @property
    def num_objects(self) -> int:
        return len(self.labels)
