"""Convert a VOC folder into a ``VocDataset``: parallel parse, image checks, merge.

Each annotation file is handled independently (``convert_file.convert_one``); worker
processes take chunks of files (``convert_batch``) and send back one compact
``ResultBatch`` per chunk.
The parent process appends each batch to the columns of a ``RecordTable`` as it arrives,
then assigns the final class indices, sorts the records by id, builds the splits, and
hashes the result. The image files' sizes and mtimes for the source fingerprint come from
the images the workers open, so the parent never stats them one by one.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm  # no types-tqdm stubs installed

from prodet import __version__
from prodet.annotations.boxes import ON_ERROR_MODES
from prodet.annotations.convert_file import (
    ConvertOptions,
    FileResult,
    ResultBatch,
    convert_batch,
    convert_one,
)
from prodet.annotations.pickle_store import DatasetFileError, UnsafePickleError, load_dataset
from prodet.annotations.record_table import RecordTable
from prodet.annotations.report import ConversionSummary, Problem, count_problems
from prodet.annotations.schema import (
    BACKGROUND,
    FORMAT_VERSION,
    VocDataset,
    compute_content_hash,
)
from prodet.annotations.voc_folder import (
    VocFolder,
    discover,
    fingerprint,
    read_splits,
    with_file_stats,
)

__all__ = [
    "ConversionResult",
    "ConvertOptions",
    "FileResult",
    "ResultBatch",
    "build_dataset",
    "convert_batch",
    "convert_folder",
    "convert_one",
    "summarize",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversionResult:
    dataset: VocDataset | None
    summary: ConversionSummary
    problems: list[Problem]

    @property
    def failed(self) -> bool:
        return self.dataset is None


# Set in each worker by ``_init_worker`` (fork start method shares them cheaply).
_STATE: tuple[VocFolder, ConvertOptions] | None = None


def _init_worker(folder: VocFolder, options: ConvertOptions) -> None:
    global _STATE
    _STATE = (folder, options)


def _convert_range_in_worker(bounds: tuple[int, int]) -> ResultBatch:
    if _STATE is None:
        raise RuntimeError("worker used before _init_worker")
    folder, options = _STATE
    return convert_batch(folder.xml_files[bounds[0] : bounds[1]], folder, options)


def _iter_batches(
    folder: VocFolder, options: ConvertOptions, workers: int, progress: bool
) -> Iterator[ResultBatch]:
    """Convert every annotation file, yielding batches in file order as they complete.

    With ``workers > 1`` the files are converted by a process pool; the caller consumes
    each batch while the workers carry on with the next ones.
    """
    paths = folder.xml_files
    bar = tqdm(total=len(paths), desc="convert", unit="xml", disable=not progress, leave=False)
    try:
        if workers <= 1 or len(paths) < 64:
            step = 256
            for start in range(0, len(paths), step):
                batch = convert_batch(paths[start : start + step], folder, options)
                bar.update(len(batch))
                yield batch
        else:
            chunk = max(16, min(512, len(paths) // (workers * 8)))
            bounds = [(i, min(i + chunk, len(paths))) for i in range(0, len(paths), chunk)]
            ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(folder, options)) as pool:
                for batch in pool.imap(_convert_range_in_worker, bounds):
                    bar.update(len(batch))
                    yield batch
    finally:
        bar.close()


class _RecordBuilder:
    """Turns batches into the columns of a ``RecordTable`` as they arrive.

    The class list (hence the label values) is only known once every file is read, so
    labels are provisional, 1, 2, ... by first appearance of a class name, until
    ``dataset`` maps them to the final indices in one vectorised step. Rows are kept in
    arrival (file) order and sorted by image id at the end, only when they are not sorted
    already. It also collects the annotation files' stats the workers read, for the
    source fingerprint.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.file_problems: list[Problem] = []
        self.duplicates: list[Problem] = []
        self.files = 0
        self.provisional: dict[str, int] = {}
        self.xml_stats: list[tuple[int, int]] = []
        self.image_stats: dict[str, tuple[int, int] | None] = {}
        self.ids: list[str] = []
        self.paths: list[str] = []
        self.widths: list[int] = []
        self.heights: list[int] = []
        self.formats: list[str] = []
        self.shas: list[str] = []
        self.counts: list[int] = []
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.difficult: list[np.ndarray] = []

    def add(self, b: ResultBatch) -> None:
        self.files += len(b)
        self.file_problems += b.problems
        self.xml_stats += b.xml_stats
        self.image_stats.update(b.image_stats)
        provisional = self.provisional
        labels = np.array(
            [provisional.setdefault(n, len(provisional) + 1) for n in b.names], dtype=np.int64
        )
        boxes = np.frombuffer(b.boxes, dtype=np.float32).reshape(-1, 4)
        difficult = np.frombuffer(b.difficult, dtype=np.bool_)
        seen = self.seen
        keep: list[bool] = []
        for image_id, image_path in zip(b.image_ids, b.image_paths, strict=True):
            if image_path is None:
                keep.append(False)
            elif image_id in seen:
                self.duplicates.append(
                    Problem(
                        "duplicate_id",
                        image_id,
                        "two annotation files share this id",
                        "second skipped",
                    )
                )
                keep.append(False)
            else:
                seen.add(image_id)
                keep.append(True)
        rows: Sequence[int]
        if all(keep):
            rows = range(len(keep))
        else:
            rows = [i for i, k in enumerate(keep) if k]
            objects = np.repeat(np.array(keep, dtype=bool), b.object_counts)
            boxes, labels, difficult = boxes[objects], labels[objects], difficult[objects]
        intern = sys.intern  # one object per format: the pickle then memoizes it
        self.ids += [b.image_ids[i] for i in rows]
        self.paths += [b.image_paths[i] for i in rows]  # type: ignore[misc]
        self.widths += [b.widths[i] for i in rows]
        self.heights += [b.heights[i] for i in rows]
        self.formats += [intern(b.formats[i]) for i in rows]
        self.shas += [b.shas[i] for i in rows]
        self.counts += [b.object_counts[i] for i in rows]
        self.boxes.append(boxes)
        self.labels.append(labels)
        self.difficult.append(difficult)

    def _final_classes(self, options: ConvertOptions) -> tuple[tuple[str, ...], np.ndarray]:
        """The class list and the map from provisional to final label values."""
        if options.classes is not None:
            classes: tuple[str, ...] = (BACKGROUND, *options.classes)
        else:
            classes = (BACKGROUND, *sorted(self.provisional))
        index = {c: i for i, c in enumerate(classes)}
        final = np.zeros(len(self.provisional) + 1, dtype=np.int64)
        for name, label in self.provisional.items():
            final[label] = index[name]
        return classes, final

    def _table(self, final_labels: np.ndarray) -> RecordTable:
        """The records sorted by image id (a no-op permutation is skipped)."""
        ids, counts = self.ids, np.array(self.counts, dtype=np.int64)
        boxes = np.concatenate(self.boxes) if self.boxes else np.zeros((0, 4), np.float32)
        labels = final_labels[np.concatenate(self.labels)] if self.labels else np.zeros(0, np.int64)
        difficult = np.concatenate(self.difficult) if self.difficult else np.zeros(0, bool)
        text_columns = [ids, self.paths, self.formats, self.shas]
        size_columns = [self.widths, self.heights]
        if any(a >= b for a, b in itertools.pairwise(ids)):
            order = sorted(range(len(ids)), key=ids.__getitem__)
            text_columns = [[c[i] for i in order] for c in text_columns]
            size_columns = [[c[i] for i in order] for c in size_columns]
            starts = np.zeros(len(counts), dtype=np.int64)
            np.cumsum(counts[:-1], out=starts[1:])
            counts = counts[order]
            # Object row j of sorted record k comes from starts[order[k]] + (j - new start).
            new_starts = np.cumsum(counts) - counts
            take = np.repeat(starts[order] - new_starts, counts) + np.arange(int(counts.sum()))
            boxes, labels, difficult = boxes[take], labels[take], difficult[take]
        sorted_ids, paths, formats, shas = text_columns
        widths, heights = size_columns
        return RecordTable(
            sorted_ids,
            paths,
            np.array(widths, dtype=np.int64),
            np.array(heights, dtype=np.int64),
            formats,
            shas,
            counts,
            boxes,
            labels,
            difficult,
        )

    def dataset(
        self, folder: VocFolder, options: ConvertOptions, source_fingerprint: str
    ) -> tuple[VocDataset, list[Problem], ConversionSummary]:
        """The dataset of every batch added (records sorted by image id), once."""
        classes, final = self._final_classes(options)
        records = self._table(final)
        problems = self.file_problems + self.duplicates
        splits: dict[str, tuple[str, ...]] = {}
        seen = self.seen
        for split, ids in read_splits(folder.split_files).items():
            unknown = [i for i in ids if i not in seen]
            if unknown:
                problems.append(
                    Problem(
                        "unknown_split_id",
                        f"ImageSets/Main/{split}.txt",
                        f"{len(unknown)} id(s) without a usable annotation, e.g. {unknown[0]!r}",
                        "left out of the split",
                    )
                )
            splits[split] = tuple(i for i in ids if i in seen)
        dataset = VocDataset(
            format_version=FORMAT_VERSION,
            root=str(folder.root),
            classes=classes,
            records=records,
            splits=splits,
            source_fingerprint=source_fingerprint,
            content_hash=compute_content_hash(classes, records, splits),
        )
        return dataset, problems, summarize(dataset, self.files, problems)


def build_dataset(
    folder: VocFolder,
    options: ConvertOptions,
    batches: Iterable[ResultBatch],
    source_fingerprint: str,
) -> tuple[VocDataset, list[Problem], ConversionSummary]:
    """Merge the files' results into a dataset (records sorted by image id).

    ``batches`` may be a generator: each batch is turned into records as it arrives.
    """
    builder = _RecordBuilder()
    for batch in batches:
        builder.add(batch)
    return builder.dataset(folder, options, source_fingerprint)


def summarize(
    dataset: VocDataset, annotation_files: int, problems: list[Problem], *, reused: bool = False
) -> ConversionSummary:
    """Counts per class, difficult objects, negatives, problems and split sizes."""
    table = dataset.records  # a RecordTable: counted from its columns
    if not isinstance(table, RecordTable):  # VocDataset.__post_init__ always makes one
        raise TypeError(f"dataset records are a {type(table).__name__}, not a RecordTable")
    classes = dataset.classes
    labels = table.labels[table.labels < len(classes)]  # a loaded file may hold others
    counts = np.bincount(labels, minlength=len(classes)).tolist()
    return ConversionSummary(
        annotation_files=annotation_files,
        images=len(table),
        objects_per_class=dict(zip(classes[1:], counts[1:], strict=True)),
        difficult=int(table.difficult.sum()),
        negatives=int((table.counts == 0).sum()),
        problems_by_kind=count_problems(problems),
        splits={k: len(v) for k, v in dataset.splits.items()},
        reused=reused,
    )


def _reusable(output: Path | None, source_fingerprint: str) -> VocDataset | None:
    if output is None or not output.is_file():
        return None
    try:
        previous = load_dataset(output)
    except (DatasetFileError, UnsafePickleError, OSError) as exc:
        logger.info("not reusing %s: %s", output, exc)
        return None
    return previous if previous.source_fingerprint == source_fingerprint else None


def convert_folder(
    voc_root: str | os.PathLike[str],
    *,
    options: ConvertOptions | None = None,
    workers: int | None = None,
    previous_output: Path | None = None,
    progress: bool = False,
) -> ConversionResult:
    """Convert the VOC folder at ``voc_root``.

    Args:
        options: error mode and optional fixed class list.
        workers: processes to use (default: all cores).
        previous_output: an earlier output file; when its source fingerprint matches the
            folder and options, it is returned without parsing anything.
        progress: show a tqdm bar.

    Returns:
        The dataset (None when ``on_error="fail"`` met an error or nothing was readable),
        the summary and every problem.
    """
    options = options or ConvertOptions()
    if options.on_error not in ON_ERROR_MODES:
        raise ValueError(
            f"--on-error must be one of {', '.join(ON_ERROR_MODES)}, got {options.on_error!r}"
        )
    # A previous output can only be reused when it exists; then the fingerprint is needed
    # before converting. Otherwise it is computed at the end, with the annotation and image
    # files' stats taken by the workers from the files they open (no stat per file here).
    reusable = previous_output is not None and previous_output.is_file()
    folder = discover(voc_root, stat_files=reusable)
    fingerprint_options = {
        "prodet": __version__,
        "format": str(FORMAT_VERSION),
        "root": str(folder.root),
        "on_error": options.on_error,
        "classes": "\n".join(options.classes) if options.classes is not None else "<auto>",
    }
    source_fingerprint = fingerprint(folder, fingerprint_options) if reusable else None
    if source_fingerprint is not None:
        previous = _reusable(previous_output, source_fingerprint)
        if previous is not None:
            summary = summarize(previous, len(folder.xml_files), [], reused=True)
            return ConversionResult(previous, summary, [])
    builder = _RecordBuilder()
    for batch in _iter_batches(folder, options, workers or os.cpu_count() or 1, progress):
        builder.add(batch)
    if source_fingerprint is None:
        complete = with_file_stats(folder, builder.xml_stats, builder.image_stats)
        source_fingerprint = fingerprint(complete, fingerprint_options)
    dataset, problems, summary = builder.dataset(folder, options, source_fingerprint)
    failed = (
        options.on_error == "fail" and any(p.is_error for p in problems)
    ) or not dataset.records
    return ConversionResult(None if failed else dataset, summary, problems)
