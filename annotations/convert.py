"""Convert a VOC folder into a ``VocDataset``: parallel parse, image checks, merge.

Each annotation file is handled independently by ``convert_one`` (in worker processes
when ``workers > 1``); the parent process then assigns class indices, builds the
records and splits, and hashes the result.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from annotations import __version__
from annotations.boxes import ON_ERROR_MODES, clean_objects
from annotations.image_header import ImageHeaderError, read_image_header
from annotations.pickle_store import DatasetFileError, UnsafePickleError, load_dataset
from annotations.report import ConversionSummary, Problem, count_problems
from annotations.schema import (
    BACKGROUND,
    FORMAT_VERSION,
    ImageRecord,
    VocDataset,
    compute_content_hash,
)
from annotations.voc_folder import VocFolder, discover, fingerprint, read_splits
from annotations.voc_xml import VocFormatError, parse_voc_xml

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    """What one annotation file yielded; ``record`` fields are None when it was unusable."""

    image_id: str
    image_path: str | None
    width: int
    height: int
    image_format: str
    boxes: np.ndarray
    names: tuple[str, ...]
    difficult: np.ndarray
    xml_sha256: str
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class ConvertOptions:
    on_error: str = "repair"
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ConversionResult:
    dataset: VocDataset | None
    summary: ConversionSummary
    problems: list[Problem]

    @property
    def failed(self) -> bool:
        return self.dataset is None


_EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)
_EMPTY_FLAGS = np.zeros((0,), dtype=bool)

# Set in each worker by ``_init_worker`` (fork start method shares them cheaply).
_STATE: tuple[VocFolder, ConvertOptions] | None = None


def _init_worker(folder: VocFolder, options: ConvertOptions) -> None:
    global _STATE
    _STATE = (folder, options)


def _find_image(folder: VocFolder, stem: str, filename: str) -> str | None:
    candidates = folder.images_by_stem.get(stem)
    if not candidates and filename:
        candidates = folder.images_by_stem.get(os.path.splitext(os.path.basename(filename))[0])
    if not candidates:
        return None
    for c in candidates:  # the XML's own filename wins among same-stem files
        if filename and c.endswith("/" + filename):
            return c
    return candidates[0]


def _unusable(stem: str, sha: str, problem: Problem) -> FileResult:
    return FileResult(stem, None, 0, 0, "", _EMPTY_BOXES, (), _EMPTY_FLAGS, sha, (problem,))


def convert_one(xml_path: Path, folder: VocFolder, options: ConvertOptions) -> FileResult:
    """Parse one annotation file and check it against its image.

    Never raises for bad input: every problem is returned in ``FileResult.problems``.
    """
    name = xml_path.name
    stem = xml_path.stem
    data = xml_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        raw = parse_voc_xml(data, name)
    except VocFormatError as exc:
        return _unusable(stem, sha, Problem("unreadable_xml", name, str(exc), "file skipped"))
    problems = [
        Problem("bad_object", name, i.message, "object skipped", i.index) for i in raw.issues
    ]
    image_rel = _find_image(folder, stem, raw.filename)
    if image_rel is None:
        where = folder.image_dir.relative_to(folder.root).as_posix()
        return _unusable(
            stem,
            sha,
            Problem(
                "missing_image",
                name,
                f"no image {stem}.* (or {raw.filename!r}) in {where}/",
                "file skipped",
            ),
        )
    try:
        header = read_image_header(folder.root / image_rel)
    except (ImageHeaderError, OSError) as exc:
        return _unusable(stem, sha, Problem("unreadable_image", name, str(exc), "file skipped"))
    if (raw.width, raw.height) != (header.width, header.height):
        written = (
            "missing" if raw.width is None or raw.height is None else (f"{raw.width}x{raw.height}")
        )
        problems.append(
            Problem(
                "size_mismatch",
                name,
                f"<size> is {written}, the image {image_rel} is {header.width}x{header.height}",
                "used the image's real size",
            )
        )
    known = frozenset(options.classes) if options.classes is not None else None
    clean, box_problems = clean_objects(
        raw.objects, header.width, header.height, name, options.on_error, known
    )
    problems += box_problems
    return FileResult(
        stem,
        image_rel,
        header.width,
        header.height,
        header.format,
        clean.boxes,
        clean.names,
        clean.difficult,
        sha,
        tuple(problems),
    )


def _convert_in_worker(xml_path: Path) -> FileResult:
    if _STATE is None:
        raise RuntimeError("worker used before _init_worker")
    return convert_one(xml_path, *_STATE)


def _run_all(
    folder: VocFolder, options: ConvertOptions, workers: int, progress: bool
) -> list[FileResult]:
    paths = folder.xml_files
    bar = tqdm(total=len(paths), desc="convert", unit="xml", disable=not progress, leave=False)
    results: list[FileResult] = []
    if workers <= 1 or len(paths) < 64:
        for p in paths:
            results.append(convert_one(p, folder, options))
            bar.update()
    else:
        chunk = max(16, min(512, len(paths) // (workers * 8)))
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(folder, options)) as pool:
            for r in pool.imap(_convert_in_worker, paths, chunksize=chunk):
                results.append(r)
                bar.update()
    bar.close()
    return results


def _class_list(results: list[FileResult], options: ConvertOptions) -> tuple[str, ...]:
    if options.classes is not None:
        return (BACKGROUND, *options.classes)
    return (BACKGROUND, *sorted({n for r in results for n in r.names}))


def build_dataset(
    folder: VocFolder, options: ConvertOptions, results: list[FileResult], source_fingerprint: str
) -> tuple[VocDataset, list[Problem], ConversionSummary]:
    """Merge per-file results into a dataset (records sorted by image id)."""
    problems = [p for r in results for p in r.problems]
    classes = _class_list(results, options)
    index = {c: i for i, c in enumerate(classes)}
    records: dict[str, ImageRecord] = {}
    for r in results:
        if r.image_path is None:
            continue
        if r.image_id in records:
            problems.append(
                Problem(
                    "duplicate_id",
                    r.image_id,
                    "two annotation files share this id",
                    "second skipped",
                )
            )
            continue
        records[r.image_id] = ImageRecord(
            image_id=r.image_id,
            image_path=r.image_path,
            width=r.width,
            height=r.height,
            image_format=r.image_format,
            boxes=r.boxes,
            labels=np.asarray([index[n] for n in r.names], dtype=np.int64),
            difficult=r.difficult,
            xml_sha256=r.xml_sha256,
        )
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
    summary = summarize(dataset, len(results), problems)
    return dataset, problems, summary


def summarize(
    dataset: VocDataset, annotation_files: int, problems: list[Problem], *, reused: bool = False
) -> ConversionSummary:
    """Counts per class, difficult objects, negatives, problems and split sizes."""
    counts: Counter[str] = Counter()
    for rec in dataset.records:
        counts.update(dataset.classes[i] for i in rec.labels)
    return ConversionSummary(
        annotation_files=annotation_files,
        images=len(dataset.records),
        objects_per_class={c: counts.get(c, 0) for c in dataset.classes[1:]},
        difficult=int(sum(int(r.difficult.sum()) for r in dataset.records)),
        negatives=sum(1 for r in dataset.records if r.num_objects == 0),
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
    folder = discover(voc_root)
    source_fingerprint = fingerprint(
        folder,
        {
            "prodet": __version__,
            "format": str(FORMAT_VERSION),
            "root": str(folder.root),
            "on_error": options.on_error,
            "classes": "\n".join(options.classes) if options.classes is not None else "<auto>",
        },
    )
    previous = _reusable(previous_output, source_fingerprint)
    if previous is not None:
        summary = summarize(previous, len(folder.xml_files), [], reused=True)
        return ConversionResult(previous, summary, [])
    results = _run_all(folder, options, workers or os.cpu_count() or 1, progress)
    dataset, problems, summary = build_dataset(folder, options, results, source_fingerprint)
    failed = (
        options.on_error == "fail" and any(p.is_error for p in problems)
    ) or not dataset.records
    return ConversionResult(None if failed else dataset, summary, problems)
