"""The records of a dataset stored column by column, as ``ImageRecord`` views on demand.

A converted dataset holds tens of thousands of small records. Stored one object per
record, with three tiny numpy arrays each, they cost far more to build, pickle and load
than the data they hold. ``RecordTable`` keeps one list or array per field instead:

    ================  ==============================  ==============================
    column            type / shape                    holds
    ================  ==============================  ==============================
    ``image_ids``     tuple[str], R                   record ``i``'s id (sorted)
    ``image_paths``   tuple[str], R                   relative image path
    ``widths``        int64 ``[R]``                   real image width
    ``heights``       int64 ``[R]``                   real image height
    ``formats``       tuple[str], R                   sniffed image format
    ``xml_sha256``    tuple[str], R                   annotation file digest
    ``counts``        int64 ``[R]``                   objects of each record
    ``boxes``         float32 ``[M, 4]``              ``x1, y1, x2, y2`` (see ``schema``)
    ``labels``        int64 ``[M]``                   class indices, never 0
    ``difficult``     bool ``[M]``                    VOC's ``<difficult>``
    ================  ==============================  ==============================

Record ``i``'s objects are rows ``offsets[i]:offsets[i + 1]`` of the object columns, in
record order. It is a read-only ``Sequence[ImageRecord]``: the records are built once, on
first access, with views of the object columns. It pickles as its columns (a few large
objects), which the restricted unpickler in ``pickle_store`` admits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from prodet.annotations.image_record import ImageRecord

_STR_COLUMNS = ("image_ids", "image_paths", "formats", "xml_sha256")


class RecordTable(Sequence[ImageRecord]):
    """Columns of ``R`` records holding ``M`` objects in all (see the module doc).

    Raises:
        ValueError: columns of the wrong type, dtype, shape or length, counts that do not
            add up to the objects, or a label below 1 (0 is the background).
    """

    __slots__ = (
        "_records",
        "boxes",
        "counts",
        "difficult",
        "formats",
        "heights",
        "image_ids",
        "image_paths",
        "labels",
        "offsets",
        "widths",
        "xml_sha256",
    )

    def __init__(
        self,
        image_ids: Sequence[str],
        image_paths: Sequence[str],
        widths: np.ndarray,
        heights: np.ndarray,
        formats: Sequence[str],
        xml_sha256: Sequence[str],
        counts: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        difficult: np.ndarray,
    ) -> None:
        self.image_ids = tuple(image_ids)
        self.image_paths = tuple(image_paths)
        self.formats = tuple(formats)
        self.xml_sha256 = tuple(xml_sha256)
        self.widths = np.asarray(widths, dtype=np.int64)
        self.heights = np.asarray(heights, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.boxes, self.labels, self.difficult = boxes, labels, difficult
        self._check()
        self.offsets = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=self.offsets[1:])
        self._records: tuple[ImageRecord, ...] | None = None

    def _check(self) -> None:
        r = len(self.image_ids)
        for name in _STR_COLUMNS:
            column = getattr(self, name)
            if len(column) != r or not all(type(s) is str for s in column):
                raise ValueError(f"RecordTable: {name} must hold {r} strings, one per record")
        for name in ("widths", "heights", "counts"):
            if getattr(self, name).shape != (r,):
                raise ValueError(f"RecordTable: {name} must be int64 [{r}]")
        m = int(self.counts.sum()) if r else 0
        if r and self.counts.min() < 0:
            raise ValueError("RecordTable: counts must not be negative")
        b, lab, d = self.boxes, self.labels, self.difficult
        if not isinstance(b, np.ndarray) or b.dtype != np.float32 or b.shape != (m, 4):
            raise ValueError(f"RecordTable: boxes must be float32 [{m}, 4] (sum of counts)")
        if not isinstance(lab, np.ndarray) or lab.dtype != np.int64 or lab.shape != (m,):
            raise ValueError(f"RecordTable: labels must be int64 [{m}]")
        if not isinstance(d, np.ndarray) or d.dtype != np.bool_ or d.shape != (m,):
            raise ValueError(f"RecordTable: difficult must be bool [{m}]")
        if m and lab.min() < 1:
            raise ValueError("RecordTable: label 0 is background, not a box")

    @classmethod
    def from_records(cls, records: Sequence[ImageRecord]) -> RecordTable:
        """The table of existing records (their arrays are copied into the columns)."""
        if isinstance(records, RecordTable):
            return records

        def column(arrays: list[np.ndarray], dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
            return (
                np.concatenate(arrays).astype(dtype, copy=False)
                if arrays
                else np.zeros(shape, dtype)
            )

        return cls(
            [r.image_id for r in records],
            [r.image_path for r in records],
            np.array([r.width for r in records], dtype=np.int64),
            np.array([r.height for r in records], dtype=np.int64),
            [r.image_format for r in records],
            [r.xml_sha256 for r in records],
            np.array([r.num_objects for r in records], dtype=np.int64),
            column([r.boxes.reshape(-1, 4) for r in records], np.float32, (0, 4)),
            column([r.labels for r in records], np.int64, (0,)),
            column([r.difficult for r in records], np.bool_, (0,)),
        )

    # -- Sequence ------------------------------------------------------------------------

    def _rows(self) -> Iterator[tuple[str, str, int, int, str, str, int, int]]:
        """Each record's scalar fields and its object rows ``start, end``, in order."""
        o = self.offsets.tolist()
        return zip(
            self.image_ids,
            self.image_paths,
            self.widths.tolist(),
            self.heights.tolist(),
            self.formats,
            self.xml_sha256,
            o[:-1],
            o[1:],
            strict=True,
        )

    def _built(self) -> tuple[ImageRecord, ...]:
        if self._records is None:
            b, lab, d = self.boxes, self.labels, self.difficult
            self._records = tuple(
                ImageRecord(i, p, w, h, f, b[start:end], lab[start:end], d[start:end], s)
                for i, p, w, h, f, s, start, end in self._rows()
            )
        return self._records

    def __len__(self) -> int:
        return len(self.image_ids)

    @overload
    def __getitem__(self, index: int) -> ImageRecord: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[ImageRecord, ...]: ...
    def __getitem__(self, index: int | slice) -> ImageRecord | tuple[ImageRecord, ...]:
        return self._built()[index]

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self._built())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordTable):
            return _same_columns(self, other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordTable({len(self)} records, {len(self.labels)} objects)"

    # -- storage -------------------------------------------------------------------------

    def columns(self) -> tuple[Any, ...]:
        """The constructor's arguments, in order (what the pickle stores)."""
        return (
            self.image_ids,
            self.image_paths,
            self.widths,
            self.heights,
            self.formats,
            self.xml_sha256,
            self.counts,
            self.boxes,
            self.labels,
            self.difficult,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (RecordTable, self.columns())

    def hash_into(self, parts: list[bytes]) -> None:
        """Append the records' part of ``schema.compute_content_hash`` to ``parts``.

        Per record, in order: a line ``\n{id}\t{path}\t{width}\t{height}\t{format}\t
        {xml_sha256}\n``, then its boxes as little-endian float32, its labels as
        little-endian int64 and its difficult flags as bytes. These are the bytes format
        1 hashed record by record, so a dataset's hash did not change with the layout; they
        are taken here as slices of each column's bytes.
        """
        boxes = np.ascontiguousarray(self.boxes, dtype="<f4").tobytes()
        labels = np.ascontiguousarray(self.labels, dtype="<i8").tobytes()
        difficult = np.ascontiguousarray(self.difficult, dtype=np.bool_).tobytes()
        for i, p, w, h, f, s, start, end in self._rows():
            parts += (
                f"\n{i}\t{p}\t{w}\t{h}\t{f}\t{s}\n".encode(),
                boxes[16 * start : 16 * end],
                labels[8 * start : 8 * end],
                difficult[start:end],
            )


def _same_columns(a: RecordTable, b: RecordTable) -> bool:
    for x, y in zip(a.columns(), b.columns(), strict=True):
        if isinstance(x, np.ndarray):
            if x.shape != y.shape or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True
