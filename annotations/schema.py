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

from prodet.annotations.image_record import ImageRecord
from prodet.annotations.record_table import RecordTable

# ImageRecord lives in its own module (below record_table); it is named here too, as part
# of the contract, and datasets of format 1 pickled it under this module's name.
__all__ = [
    "BACKGROUND",
    "FORMAT_VERSION",
    "HASH_VERSION",
    "ImageRecord",
    "VocDataset",
    "compute_content_hash",
]

FORMAT_VERSION = 2
# The content hash's own version: it hashes the content, not the file layout, so it did not
# change when format 2 stored the records column by column (a model trained on a format-1
# dataset still matches the same data converted again).
HASH_VERSION = 1
BACKGROUND = "__background__"


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
    # One sha256 over the concatenated parts (the digest equals feeding them one by one).
    parts = [f"v{HASH_VERSION}\n".encode(), "\n".join(classes).encode("utf-8")]
    RecordTable.from_records(records).hash_into(parts)  # a no-op wrap for a dataset's table
    for name in sorted(splits):
        parts.append(f"\n[{name}]\n".encode() + "\n".join(splits[name]).encode("utf-8"))
    return hashlib.sha256(b"".join(parts)).hexdigest()
