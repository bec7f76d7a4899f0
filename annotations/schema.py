"""The pickled dataset contract between the annotations stage and everything after it.

Box convention (decided once, used by every stage):
    ``boxes`` are float32 arrays of shape ``[N, 4]`` holding ``x1, y1, x2, y2`` in
    0-based, continuous pixel coordinates: the left/top edge of the first pixel is 0 and
    a box covering the whole ``W x H`` image is ``[0, 0, W, H]``. VOC writes 1-based,
    inclusive integer pixel indices, so ``x1 = xmin - 1``, ``y1 = ymin - 1``,
    ``x2 = xmax``, ``y2 = ymax`` (the torchvision/Detectron convention); the COCO export
    writes ``[x1, y1, x2 - x1, y2 - y1]``.

Labels are int64 indices into ``VocDataset.classes``, where index 0 is the background
class ``"__background__"`` and never appears in ``labels``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FORMAT_VERSION = 2
# The content hash's own version: it hashes the content, not the file layout, so it did not
# change when format 2 stored the records column by column (a model trained on a format-1
# dataset still matches the same data converted again).
HASH_VERSION = 1
BACKGROUND = "__background__"


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image.

    Attributes:
        image_id: the annotation's file stem, unique in the dataset.
        image_path: path of the image relative to ``VocDataset.root`` (POSIX separators).
        width, height: the real image size in pixels, read from the image file's header.
        image_format: the real format sniffed from the bytes (``"PNG"``, ``"JPEG"``, ...),
            whatever the file extension says.
        boxes: float32 ``[N, 4]``, ``x1, y1, x2, y2``, 0-based pixels (see module doc).
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


@dataclass(frozen=True)
class VocDataset:
    """A converted VOC folder.

    Attributes:
        format_version: schema version; loaders refuse versions they do not know.
        root: absolute path of the VOC folder at conversion time (images live below it).
        classes: class names, ``classes[0] == "__background__"``.
        records: one per image, sorted by ``image_id``; any sequence of ``ImageRecord``
            is accepted and stored as an ``annotations.record_table.RecordTable`` (the
            records column by column; each record is built on first access).
        splits: split name (``"trainval"``, ``"test"``, ...) to image ids.
        source_fingerprint: digest of the inputs' names, sizes and mtimes plus the
            conversion options; an unchanged folder is not parsed again.
        content_hash: sha256 over classes, records and splits (see ``compute_content_hash``).
    """

    format_version: int
    root: str
    classes: tuple[str, ...]
    records: Sequence[ImageRecord]
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source_fingerprint: str = ""
    content_hash: str = ""

    def __post_init__(self) -> None:
        from prodet.annotations.record_table import RecordTable  # it builds on ImageRecord

        if not isinstance(self.records, RecordTable):
            object.__setattr__(self, "records", RecordTable.from_records(self.records))

    def record_index(self) -> dict[str, int]:
        """Map image id to its position in ``records``."""
        return {r.image_id: i for i, r in enumerate(self.records)}

    def split_records(self, split: str) -> list[ImageRecord]:
        """The records of one split, in the split file's order.

        Raises:
            ValueError: if the split does not exist (the message lists the ones that do).
        """
        if split not in self.splits:
            known = ", ".join(sorted(self.splits)) or "none"
            raise ValueError(f"unknown split {split!r}; this dataset has: {known}")
        index = self.record_index()
        return [self.records[index[i]] for i in self.splits[split] if i in index]


def compute_content_hash(
    classes: tuple[str, ...],
    records: Sequence[ImageRecord],
    splits: dict[str, tuple[str, ...]],
) -> str:
    """sha256 over everything a model depends on, independent of pickle's byte layout."""
    from prodet.annotations.record_table import RecordTable

    # One sha256 over the concatenated parts (the digest equals feeding them one by one).
    parts = [f"v{HASH_VERSION}\n".encode(), "\n".join(classes).encode("utf-8")]
    RecordTable.from_records(records).hash_into(parts)  # a no-op wrap for a dataset's table
    for name in sorted(splits):
        parts.append(f"\n[{name}]\n".encode() + "\n".join(splits[name]).encode("utf-8"))
    return hashlib.sha256(b"".join(parts)).hexdigest()
