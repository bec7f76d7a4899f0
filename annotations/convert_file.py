"""Convert annotation files into a compact ``ResultBatch``: read, parse, check the image.

Each annotation file is handled independently: its bytes are read and hashed, parsed
(``voc_xml``), matched with its image, whose real size and format are read from the
header (``image_header``), and its boxes are cleaned (``boxes``). Every problem is
recorded, never raised. ``convert`` runs ``convert_batch`` over chunks of files in worker
processes and merges the batches.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from prodet.annotations.boxes import clean_object_lists
from prodet.annotations.image_header import ImageHeader, ImageHeaderError, read_image_header_fd
from prodet.annotations.report import Problem
from prodet.annotations.voc_folder import VocFolder
from prodet.annotations.voc_xml import VocFormatError, parse_voc_xml


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


@dataclass
class ResultBatch:
    """The results of consecutive annotation files, column by column.

    Workers send one batch per chunk of files: a few lists and two byte strings pickle far
    faster than one ``FileResult`` with three numpy arrays per file. Row ``i`` is file
    ``i``; ``image_paths[i]`` is None when the file was unusable (then it has no objects).
    ``object_counts[i]`` kept objects follow in ``names``, ``boxes`` (float32 ``x1, y1,
    x2, y2`` each) and ``difficult`` (one 0/1 byte each), in file order; ``problems`` are
    the files' problems in file order. ``xml_stats[i]`` is the annotation file's
    ``(size, mtime_ns)`` as read, and ``image_stats`` those of each image name tried
    (None: its target is not a file), for the source fingerprint.
    """

    image_ids: list[str] = field(default_factory=list)
    image_paths: list[str | None] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    shas: list[str] = field(default_factory=list)
    object_counts: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    boxes: bytes = b""
    difficult: bytes = b""
    problems: list[Problem] = field(default_factory=list)
    xml_stats: list[tuple[int, int]] = field(default_factory=list)
    image_stats: dict[str, tuple[int, int] | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)


class _BatchBuilder:
    """Accumulates files into a ``ResultBatch`` (boxes as float32, flags as bytes)."""

    def __init__(self) -> None:
        self.batch = ResultBatch()
        self.boxes = array("f")
        self.difficult = bytearray()
        self.image_stats = self.batch.image_stats

    def add(
        self,
        image_id: str,
        image_path: str | None,
        width: int,
        height: int,
        image_format: str,
        xml: tuple[str, int, int],
        objects: tuple[list[tuple[float, float, float, float]], list[str], list[bool]],
        problems: list[Problem],
    ) -> None:
        """Add one file; ``xml`` is its ``(sha256, size, mtime_ns)``."""
        kept, names, difficult = objects
        b = self.batch
        b.image_ids.append(image_id)
        b.image_paths.append(image_path)
        b.widths.append(width)
        b.heights.append(height)
        b.formats.append(image_format)
        b.shas.append(xml[0])
        b.xml_stats.append(xml[1:])
        b.object_counts.append(len(names))
        b.names += names
        for box in kept:
            self.boxes.extend(box)
        self.difficult += bytes(difficult)
        b.problems += problems

    def finish(self) -> ResultBatch:
        self.batch.boxes = self.boxes.tobytes()
        self.batch.difficult = bytes(self.difficult)
        return self.batch


_NO_OBJECTS: tuple[list[tuple[float, float, float, float]], list[str], list[bool]] = ([], [], [])


# An image name whose target is not there (a dangling or looping link): as if not listed.
_NO_TARGET = frozenset((errno.ENOENT, errno.ELOOP, errno.ENOTDIR))
_OPEN_IMAGE = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # a link to a FIFO must not block


def _best_first(group: tuple[str, ...], filename: str) -> tuple[str, ...]:
    """``group`` (image names in name order) with the one ``<filename>`` names first."""
    if len(group) < 2 or not filename:
        return group
    suffix = "/" + filename
    named = tuple(c for c in group if c.endswith(suffix))
    return (*named, *(c for c in group if c not in named)) if named else group


def _open_first(
    root: str, names: tuple[str, ...], seen: dict[str, tuple[int, int] | None]
) -> tuple[str, str, int] | None:
    for name in names:
        path = os.path.join(root, name)
        try:
            fd = os.open(path, _OPEN_IMAGE)
        except OSError as exc:
            if exc.errno not in _NO_TARGET:
                raise  # it is there but cannot be read
            seen[name] = None
            continue
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            seen[name] = None
            continue
        seen[name] = (st.st_size, st.st_mtime_ns)
        return name, path, fd
    return None


def _open_image(
    folder: VocFolder, root: str, stem: str, filename: str, seen: dict[str, tuple[int, int] | None]
) -> tuple[str, str, int] | None:
    """The annotation's image: its name, path and open descriptor; None when it has none.

    The images with the annotation's own stem are tried first, then those with the stem
    of its ``<filename>``; within each, the one ``<filename>`` names, then the others in
    name order. The first regular file wins: a name whose target is missing or is not a
    file does not count, as if it were not listed. ``seen`` receives each name tried: its
    ``(size, mtime_ns)``, or None when its target is not a file.

    Raises:
        OSError: an image that exists could not be opened (e.g. no permission).
    """
    by_stem = folder.images_by_stem
    found = _open_first(root, _best_first(by_stem.get(stem, ()), filename), seen)
    if found is None and filename:
        other = os.path.splitext(os.path.basename(filename))[0]
        if other != stem:
            found = _open_first(root, _best_first(by_stem.get(other, ()), filename), seen)
    return found


def _read_header(opened: tuple[str, str, int]) -> ImageHeader:
    """The header of an image ``_open_image`` opened; closes its descriptor."""
    _, path, fd = opened
    try:
        return read_image_header_fd(fd, path)
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16


def _read_file(path: str) -> tuple[bytes, int, int]:
    """The file's bytes, size and mtime_ns (a few syscalls, no ``pathlib``/``io`` layers).

    The size and mtime come from ``fstat`` on the open file: the same values ``stat``
    gives for the path, for the fingerprint, without a second path lookup. A read that
    returns exactly that size has the whole file; otherwise it reads until end of file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        data = os.read(fd, _READ_SIZE)
        if len(data) == st.st_size:
            return data, st.st_size, st.st_mtime_ns
        parts = [data]
        while chunk := os.read(fd, _READ_SIZE):
            parts.append(chunk)
        return b"".join(parts), st.st_size, st.st_mtime_ns
    finally:
        os.close(fd)


def _stem(name: str) -> str:
    """``PurePath(name).stem`` (the image id), without building a path for ``<id>.xml``."""
    if len(name) > 4 and name[-4:].lower() == ".xml":
        return name[:-4]
    return PurePath(name).stem


def _convert_into(
    out: _BatchBuilder,
    xml_path: str,
    folder: VocFolder,
    root: str,
    on_error: str,
    known: frozenset[str] | None,
) -> None:
    """Parse one annotation file, check it against its image, and add it to ``out``."""
    name = os.path.basename(xml_path)
    stem = _stem(name)
    data, size, mtime = _read_file(xml_path)
    xml = (hashlib.sha256(data).hexdigest(), size, mtime)
    try:
        raw = parse_voc_xml(data, name)
    except VocFormatError as exc:
        problem = Problem("unreadable_xml", name, str(exc), "file skipped")
        out.add(stem, None, 0, 0, "", xml, _NO_OBJECTS, [problem])
        return
    problems = [
        Problem("bad_object", name, i.message, "object skipped", i.index) for i in raw.issues
    ]
    try:
        opened = _open_image(folder, root, stem, raw.filename, out.image_stats)
        found = None if opened is None else (opened[0], _read_header(opened))
    except (ImageHeaderError, OSError) as exc:
        problem = Problem("unreadable_image", name, str(exc), "file skipped")
        out.add(stem, None, 0, 0, "", xml, _NO_OBJECTS, [problem])
        return
    if found is None:
        where = folder.image_dir.relative_to(folder.root).as_posix()
        problem = Problem(
            "missing_image",
            name,
            f"no image {stem}.* (or {raw.filename!r}) in {where}/",
            "file skipped",
        )
        out.add(stem, None, 0, 0, "", xml, _NO_OBJECTS, [problem])
        return
    image_rel, header = found
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
    kept, names, difficult, box_problems = clean_object_lists(
        raw.objects, header.width, header.height, name, on_error, known
    )
    problems += box_problems
    out.add(
        stem,
        image_rel,
        header.width,
        header.height,
        header.format,
        xml,
        (kept, names, difficult),
        problems,
    )


def _known_classes(options: ConvertOptions) -> frozenset[str] | None:
    return frozenset(options.classes) if options.classes is not None else None


def convert_batch(
    xml_paths: Sequence[str | os.PathLike[str]], folder: VocFolder, options: ConvertOptions
) -> ResultBatch:
    """Convert consecutive annotation files into one ``ResultBatch``.

    Never raises for bad input: every problem is returned in ``ResultBatch.problems``.
    """
    out = _BatchBuilder()
    known = _known_classes(options)
    root = str(folder.root)
    for path in xml_paths:
        _convert_into(out, os.fspath(path), folder, root, options.on_error, known)
    return out.finish()


def convert_one(xml_path: Path, folder: VocFolder, options: ConvertOptions) -> FileResult:
    """Parse one annotation file and check it against its image.

    Never raises for bad input: every problem is returned in ``FileResult.problems``.
    """
    batch = convert_batch([xml_path], folder, options)
    return FileResult(
        batch.image_ids[0],
        batch.image_paths[0],
        batch.widths[0],
        batch.heights[0],
        batch.formats[0],
        np.frombuffer(batch.boxes, dtype=np.float32).reshape(-1, 4).copy(),
        tuple(batch.names),
        np.frombuffer(batch.difficult, dtype=bool).copy(),
        batch.shas[0],
        tuple(batch.problems),
    )
