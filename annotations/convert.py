"""Convert a VOC folder into a ``VocDataset``: parallel parse, image checks, merge.

Each annotation file is handled independently (``convert_file.convert_one``); worker
processes take chunks of files (``convert_batch``) and send back one compact
``ResultBatch`` per chunk.
The parent process turns each batch into records as it arrives, then assigns the final
class indices, builds the splits, and hashes the result.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from annotations import __version__
from annotations.boxes import ON_ERROR_MODES
from annotations.convert_file import (
    ConvertOptions,
    FileResult,
    ResultBatch,
    convert_batch,
    convert_one,
)
from annotations.pickle_store import DatasetFileError, UnsafePickleError, load_dataset
from annotations.report import ConversionSummary, Problem, count_problems
from annotations.schema import (
    BACKGROUND,
    FORMAT_VERSION,
    ImageRecord,
    VocDataset,
    compute_content_hash,
)
from annotations.voc_folder import (
    VocFolder,
    discover,
    fingerprint,
    read_splits,
    with_annotation_stats,
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
    """Turns batches into ``ImageRecord``s as they arrive (while workers still convert).

    The class list (hence the label values) is only known once every file is read, so
    records are built with provisional labels, 1, 2, ... by first appearance of a class
    name, and ``finish`` rewrites those label arrays in place with the final indices.
    Both are >= 1, so each record is validated as it is built. It also collects the
    annotation files' stats the workers read, for the source fingerprint.
    """

    def __init__(self) -> None:
        self.records: dict[str, ImageRecord] = {}
        self.file_problems: list[Problem] = []
        self.duplicates: list[Problem] = []
        self.files = 0
        self.provisional: dict[str, int] = {}
        self.label_arrays: list[np.ndarray] = []
        self.xml_stats: list[tuple[int, int]] = []

    def add(self, b: ResultBatch) -> None:
        self.files += len(b)
        self.file_problems += b.problems
        self.xml_stats += b.xml_stats
        provisional = self.provisional
        labels = np.array(
            [provisional.setdefault(n, len(provisional) + 1) for n in b.names], dtype=np.int64
        )
        self.label_arrays.append(labels)
        # One array per batch; each record gets views of its own rows.
        boxes = np.frombuffer(b.boxes, dtype=np.float32).reshape(-1, 4).copy()
        difficult = np.frombuffer(b.difficult, dtype=np.bool_).copy()
        records = self.records
        end = 0
        for image_id, image_path, width, height, image_format, sha, count in zip(
            b.image_ids,
            b.image_paths,
            b.widths,
            b.heights,
            b.formats,
            b.shas,
            b.object_counts,
            strict=True,
        ):
            start = end
            end += count
            if image_path is None:
                continue
            if image_id in records:
                self.duplicates.append(
                    Problem(
                        "duplicate_id",
                        image_id,
                        "two annotation files share this id",
                        "second skipped",
                    )
                )
                continue
            records[image_id] = ImageRecord(
                image_id,
                image_path,
                width,
                height,
                # Interned, as in a single process: the pickle then memoizes the same
                # objects and its bytes do not depend on the number of workers.
                sys.intern(image_format),
                boxes[start:end],
                labels[start:end],
                difficult[start:end],
                sha,
            )

    def _final_classes(self, options: ConvertOptions) -> tuple[str, ...]:
        """Fix the class list and give every record its final labels; returns the classes."""
        if options.classes is not None:
            classes: tuple[str, ...] = (BACKGROUND, *options.classes)
        else:
            classes = (BACKGROUND, *sorted(self.provisional))
        index = {c: i for i, c in enumerate(classes)}
        final = np.zeros(len(self.provisional) + 1, dtype=np.int64)
        for name, label in self.provisional.items():
            final[label] = index[name]
        for labels in self.label_arrays:
            labels[:] = final[labels]
        return classes

    def dataset(
        self, folder: VocFolder, options: ConvertOptions, source_fingerprint: str
    ) -> tuple[VocDataset, list[Problem], ConversionSummary]:
        """The dataset of every batch added (records sorted by image id), once."""
        classes = self._final_classes(options)
        records = self.records
        problems = self.file_problems + self.duplicates
        splits: dict[str, tuple[str, ...]] = {}
        for split, ids in read_splits(folder.split_files).items():
            unknown = [i for i in ids if i not in records]
            if unknown:
                problems.append(
                    Problem(
                        "unknown_split_id",
                        f"ImageSets/Main/{split}.txt",
                        f"{len(unknown)} id(s) without a usable annotation, e.g. {unknown[0]!r}",
                        "left out of the split",
                    )
                )
            splits[split] = tuple(i for i in ids if i in records)
        ordered = tuple(records[k] for k in sorted(records))
        dataset = VocDataset(
            format_version=FORMAT_VERSION,
            root=str(folder.root),
            classes=classes,
            records=ordered,
            splits=splits,
            source_fingerprint=source_fingerprint,
            content_hash=compute_content_hash(classes, ordered, splits),
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
    records = dataset.records
    counts: Counter[str] = Counter()
    labels = np.concatenate([r.labels for r in records]) if records else np.zeros(0, np.int64)
    if (
        labels.size
        and labels.dtype == np.int64
        and labels.min() >= 0
        and labels.max() < len(dataset.classes)
    ):
        for i, n in enumerate(np.bincount(labels).tolist()):  # one pass, not one per record
            if n:
                counts[dataset.classes[i]] += n
    else:  # empty, or labels a loaded file made up: count them the slow way
        for rec in records:
            counts.update(dataset.classes[i] for i in rec.labels)
    difficult = np.concatenate([r.difficult for r in records]) if records else np.zeros(0)
    return ConversionSummary(
        annotation_files=annotation_files,
        images=len(records),
        objects_per_class={c: counts.get(c, 0) for c in dataset.classes[1:]},
        difficult=int(difficult.sum()),
        negatives=sum(1 for r in records if r.num_objects == 0),
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
    # before converting. Otherwise it is computed at the end, with the annotation files'
    # stats taken by the workers from the files they read (no stat per file here).
    reusable = previous_output is not None and previous_output.is_file()
    folder = discover(voc_root, stat_annotations=reusable)
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
        complete = with_annotation_stats(folder, builder.xml_stats)
        source_fingerprint = fingerprint(complete, fingerprint_options)
    dataset, problems, summary = builder.dataset(folder, options, source_fingerprint)
    failed = (
        options.on_error == "fail" and any(p.is_error for p in problems)
    ) or not dataset.records
    return ConversionResult(None if failed else dataset, summary, problems)
