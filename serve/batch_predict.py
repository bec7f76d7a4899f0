"""``prodet predict`` over many images: skip what is done, detect the rest, write as it comes.

``run_batch`` takes the lazy walk (``serve.image_source``) ``chunk_size`` images at a time,
so memory stays bounded whatever the number of images. Of each chunk it reports the images
with a ``problem``, skips those whose output is complete (resuming a killed run), and
hands the rest to a ``Detector``: ``LocalDetector`` in this process, or
``serve.batch_cluster.RayDetector`` on Ray Data actors. Outputs are written here, by the
driver, as results come back (``serve.prediction_outputs``): OUT needs to be reachable
from this machine only, and failures and a full disk are handled in one place.

An image that cannot be read or decoded is a failure: with an ``ErrorLog`` it becomes one
line of ``OUT/errors.jsonl`` (``{"path", "name", "reason"}``), and the run goes on. The
file is started afresh by every run, because a rerun tries those images again.
``OutputSpaceError`` (a full disk) stops the run.

``check_run`` keeps the options that shape the outputs in ``OUT/.prodet-predict.json``
and refuses a rerun with other ones, which would skip images done under the old options.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from tqdm import tqdm  # no types-tqdm stubs installed

from prodet.serve.image_source import ImageInput
from prodet.serve.model_runner import ModelRunner
from prodet.serve.postprocess import DetectionFilter
from prodet.serve.predict import ImageFailure, ImageOutcome, detect_files
from prodet.serve.prediction_outputs import OutputFolder, PredictionWriter

logger = logging.getLogger(__name__)

ERRORS_FILE = "errors.jsonl"
RUN_FILE = ".prodet-predict.json"
DEFAULT_CHUNK_SIZE = 10_000


class Detector(Protocol):
    """Detects objects in images; yields every item once, in any order."""

    def detect(self, items: Sequence[ImageInput]) -> Iterator[tuple[ImageInput, ImageOutcome]]:
        """One outcome per item."""
        ...


class LocalDetector:
    """Detection in this process: ``batch_size`` images per ``session.run``."""

    def __init__(
        self,
        runner: ModelRunner,
        selection: DetectionFilter,
        *,
        batch_size: int,
        max_pixels: int,
        fast_jpeg: bool,
        draw: bool,
    ) -> None:
        self.runner = runner
        self.selection = selection
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.fast_jpeg = fast_jpeg
        self.draw = draw

    def detect(self, items: Sequence[ImageInput]) -> Iterator[tuple[ImageInput, ImageOutcome]]:
        """The outcomes, in order, one batch at a time."""
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            paths = [item.path for item in batch]
            outcomes = detect_files(
                self.runner,
                self.selection,
                paths,
                max_pixels=self.max_pixels,
                fast_jpeg=self.fast_jpeg,
                draw=self.draw,
            )
            yield from zip(batch, outcomes, strict=True)


class ErrorLog:
    """``OUT/errors.jsonl``: one JSON line per image that failed, created on the first."""

    def __init__(self, folder: OutputFolder) -> None:
        self.folder = folder
        self.path = folder.root / ERRORS_FILE
        self.count = 0
        self._file: IO[str] | None = None
        with folder.space_checked():
            self.path.unlink(missing_ok=True)

    def add(self, item: ImageInput, reason: str) -> None:
        """Append one line (flushed, so a killed run keeps it)."""
        with self.folder.space_checked():
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            line = {"path": item.path, "name": item.name, "reason": reason}
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._file.flush()
        self.count += 1

    def close(self) -> None:
        """Close the file (a full disk while flushing it raises ``OutputSpaceError``)."""
        if self._file is not None:
            with self.folder.space_checked():
                self._file.close()
            self._file = None


class RunMismatchError(ValueError):
    """OUT holds the outputs of a run with other options."""


def check_run(folder: OutputFolder, options: dict[str, Any], *, overwrite: bool) -> None:
    """Record ``options`` in ``OUT/.prodet-predict.json``, or check them against it.

    Raises:
        RunMismatchError: the file holds other options and ``overwrite`` is False; the
            message names what differs.
    """
    path = folder.root / RUN_FILE
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        previous = None
    except (OSError, ValueError) as exc:
        raise RunMismatchError(
            f"{path} is unreadable ({exc}); remove it or use a new --out"
        ) from None
    if previous is not None and previous != options and not overwrite:
        changed = sorted(
            k for k in options.keys() | previous.keys() if options.get(k) != previous.get(k)
        )
        raise RunMismatchError(
            f"{folder.root} holds the outputs of a run with other options (differing: "
            f"{', '.join(changed)}); rerun with the same ones to resume, use a new --out, "
            "or --overwrite to redo every image"
        )
    if previous != options:
        text = json.dumps(options, indent=2, sort_keys=True) + "\n"
        folder.write_bytes(path, text.encode("utf-8"))


@dataclass
class BatchSummary:
    """What a run did; ``images`` = ``done + skipped + failed``."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    detections: int = 0
    seconds: float = 0.0

    @property
    def images(self) -> int:
        return self.done + self.skipped + self.failed

    def describe(self, out: Path) -> str:
        """One line: counts, time, rate (of the images worked on), where things are."""
        worked = self.done + self.failed
        rate = f" ({worked / self.seconds:.1f} images/s)" if self.seconds > 0 and worked else ""
        line = (
            f"{self.images} images in {self.seconds:.1f} s{rate}: {self.done} detected "
            f"({self.detections} detections), {self.skipped} skipped (done before), "
            f"{self.failed} failed"
        )
        if self.failed:
            line += f" (reasons in {out / ERRORS_FILE})"
        return f"{line}; outputs in {out}"


def _chunks(items: Iterable[ImageInput], size: int) -> Iterator[list[ImageInput]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def run_batch(
    source: Iterable[ImageInput],
    detector: Detector,
    writer: PredictionWriter,
    *,
    errors: ErrorLog | None,
    resume: bool,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    report: Callable[[ImageInput, ImageOutcome], None] | None = None,
    progress: bool | None = None,
) -> BatchSummary:
    """Detect and write every image of ``source`` that is not done yet.

    Args:
        source: the images, walked lazily (``ImageSource``); walked again by
            ``writer.finish``.
        detector: where detection runs.
        writer: the output format.
        errors: where failures go; None reports them through ``report`` only.
        resume: skip images whose output is complete.
        chunk_size: images taken from the walk at a time (one Ray dataset each).
        report: called with each image detected or failed.
        progress: a tqdm bar on stderr (None: when stderr is a terminal).

    Raises:
        OutputSpaceError: the disk holding OUT is full (the run stops cleanly).
    """
    summary = BatchSummary()
    start = time.perf_counter()
    bar = tqdm(desc="predict", unit="img", disable=None if progress is None else not progress)
    try:
        for chunk in _chunks(source, chunk_size):
            pending: list[ImageInput] = []
            for item in chunk:
                if item.problem is not None:
                    _fail(summary, errors, report, item, ImageFailure(item.problem))
                elif resume and writer.complete(item):
                    summary.skipped += 1
                else:
                    pending.append(item)
            bar.update(len(chunk) - len(pending))
            for item, outcome in detector.detect(pending):
                bar.update(1)
                if isinstance(outcome, ImageFailure):
                    _fail(summary, errors, report, item, outcome)
                    continue
                try:
                    writer.write(item, outcome)
                except OSError as exc:
                    if exc.errno != errno.ENAMETOOLONG:
                        raise
                    failure = ImageFailure(f"cannot write its output: {exc.strerror}")
                    _fail(summary, errors, report, item, failure)
                    continue
                summary.done += 1
                summary.detections += len(outcome.record["detections"])
                if report is not None:
                    report(item, outcome)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    writer.finish(source)
    return summary


def _fail(
    summary: BatchSummary,
    errors: ErrorLog | None,
    report: Callable[[ImageInput, ImageOutcome], None] | None,
    item: ImageInput,
    failure: ImageFailure,
) -> None:
    summary.failed += 1
    if errors is not None:
        errors.add(item, failure.reason)
    if report is not None:
        report(item, failure)
