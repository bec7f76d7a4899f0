"""Find the annotation files, images and split lists of a VOC folder.

Accepted layouts:
    * Pascal VOC: ``ROOT/Annotations/*.xml``, ``ROOT/JPEGImages/*``,
      optional ``ROOT/ImageSets/Main/<split>.txt`` (one image id per line).
    * A flat LabelImg folder: ``ROOT/*.xml`` beside the images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path

_IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".jpe"}
)


class VocFolderError(ValueError):
    """The folder is not a VOC layout this converter understands."""


@dataclass(frozen=True)
class VocFolder:
    """The files of one VOC folder; paths are absolute, image names relative to ``root``.

    ``xml_files`` are absolute path strings, sorted by file name. ``stats`` holds
    ``(name relative to root, size, mtime_ns)`` of every input, for ``fingerprint``; when
    ``annotation_stats_deferred``, those of the annotation files are missing until
    ``with_annotation_stats`` adds them.
    """

    root: Path
    annotation_dir: Path
    image_dir: Path
    xml_files: tuple[str, ...]
    images_by_stem: dict[str, tuple[str, ...]]
    split_files: tuple[Path, ...] = field(default=())
    stats: tuple[tuple[str, int, int], ...] = field(default=())
    annotation_stats_deferred: bool = False


def _scan(directory: Path, keep: Callable[[str], bool]) -> list[os.DirEntry[str]]:
    """Entries of ``directory`` whose name passes ``keep`` and that are files (or links to one)."""
    with os.scandir(directory) as it:
        return [e for e in it if keep(e.name) and e.is_file()]


def _is_xml(name: str) -> bool:
    return name.lower().endswith(".xml")


def _scan_images(directory: Path) -> tuple[list[os.DirEntry[str]], dict[str, str]]:
    """The image files of ``directory`` (in directory order) and each one's stem by name."""
    entries: list[os.DirEntry[str]] = []
    stems: dict[str, str] = {}
    with os.scandir(directory) as it:
        for e in it:
            stem, ext = os.path.splitext(e.name)
            if ext.lower() in _IMAGE_EXTENSIONS and e.is_file():
                entries.append(e)
                stems[e.name] = stem
    return entries, stems


def discover(root: str | os.PathLike[str], *, stat_annotations: bool = True) -> VocFolder:
    """List a VOC folder's annotations, images and split files.

    Args:
        stat_annotations: False leaves the annotation files' sizes and mtimes out of
            ``stats`` (one ``stat`` per file saved here): the converter then takes them
            from the open files while it reads them, and adds them with
            ``with_annotation_stats``.

    Raises:
        VocFolderError: the folder does not exist or holds no ``.xml`` annotations.
    """
    root_path = Path(root).resolve()
    if not root_path.is_dir():
        raise VocFolderError(f"{root}: no such folder; pass the VOC root (holding Annotations/)")
    annotation_dir = root_path / "Annotations"
    image_dir = root_path / "JPEGImages"
    if not annotation_dir.is_dir():
        annotation_dir = image_dir = root_path  # flat LabelImg folder
    elif not image_dir.is_dir():
        image_dir = root_path / "images" if (root_path / "images").is_dir() else image_dir
    xml_entries = sorted(_scan(annotation_dir, _is_xml), key=attrgetter("name"))
    if not xml_entries:
        raise VocFolderError(
            f"{root}: no .xml annotations found in {annotation_dir}; expected a Pascal VOC "
            "folder (Annotations/, JPEGImages/, ImageSets/Main/) or a LabelImg folder of .xml files"
        )
    image_entries, image_stems = _scan_images(image_dir) if image_dir.is_dir() else ([], {})
    images_by_stem: dict[str, list[str]] = {}
    image_prefix = image_dir.relative_to(root_path).as_posix()
    image_prefix = "" if image_prefix == "." else image_prefix + "/"
    for name in sorted(image_stems):
        images_by_stem.setdefault(image_stems[name], []).append(image_prefix + name)
    split_dir = root_path / "ImageSets" / "Main"
    split_files = tuple(sorted(split_dir.glob("*.txt"))) if split_dir.is_dir() else ()
    annotation_prefix = _annotation_prefix(root_path, annotation_dir)
    stats = [_stat_line(e, annotation_prefix) for e in xml_entries] if stat_annotations else []
    stats += [_stat_line(e, image_prefix) for e in image_entries]  # in directory order
    for p in split_files:
        st = p.stat()
        stats.append((str(p.relative_to(root_path)), st.st_size, st.st_mtime_ns))
    return VocFolder(
        root=root_path,
        annotation_dir=annotation_dir,
        image_dir=image_dir,
        xml_files=tuple([e.path for e in xml_entries]),
        images_by_stem={k: tuple(v) for k, v in images_by_stem.items()},
        split_files=split_files,
        stats=tuple(stats),
        annotation_stats_deferred=not stat_annotations,
    )


def _annotation_prefix(root: Path, annotation_dir: Path) -> str:
    return annotation_dir.relative_to(root).as_posix() + "/"


def with_annotation_stats(
    folder: VocFolder, sizes_and_mtimes: Iterable[tuple[int, int]]
) -> VocFolder:
    """``folder`` with its annotation files' ``(size, mtime_ns)``, in ``xml_files`` order.

    Gives the same ``stats`` as ``discover(root)``, which stats the files itself.

    Raises:
        ValueError: the folder already has them, or not one pair per annotation file.
    """
    if not folder.annotation_stats_deferred:
        raise ValueError("the folder already holds its annotation files' stats")
    prefix = _annotation_prefix(folder.root, folder.annotation_dir)
    try:
        lines = [
            (prefix + os.path.basename(path), size, mtime)
            for path, (size, mtime) in zip(folder.xml_files, sizes_and_mtimes, strict=True)
        ]
    except ValueError:
        raise ValueError(
            f"expected (size, mtime_ns) for each of the {len(folder.xml_files)} annotation files"
        ) from None
    return replace(folder, stats=(*lines, *folder.stats), annotation_stats_deferred=False)


def _stat_line(entry: os.DirEntry[str], prefix: str) -> tuple[str, int, int]:
    st = entry.stat()
    return (prefix + entry.name, st.st_size, st.st_mtime_ns)


def read_splits(split_files: tuple[Path, ...]) -> dict[str, tuple[str, ...]]:
    """Read ``ImageSets/Main/<split>.txt`` files: one image id per line.

    VOC's per-class files (``<class>_<split>.txt`` with an id and a 1/-1/0 flag per line)
    are not splits and are ignored.
    """
    splits: dict[str, tuple[str, ...]] = {}
    for path in split_files:
        rows = [line.split() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        rows = [r for r in rows if r]
        if any(len(r) != 1 for r in rows):
            continue
        splits[path.stem] = tuple(dict.fromkeys(r[0] for r in rows))
    return splits


def fingerprint(folder: VocFolder, options: dict[str, str]) -> str:
    """Digest of every input's name, size and mtime plus the conversion options.

    Raises:
        ValueError: the folder's annotation stats were deferred and not added yet.
    """
    if folder.annotation_stats_deferred:
        raise ValueError(
            "fingerprint needs the annotation files' stats: discover the folder with "
            "stat_annotations=True or add them with with_annotation_stats"
        )
    lines = [f"{name}\0{size}\0{mtime}\n" for name, size, mtime in folder.stats]
    lines += [f"{key}={options[key]}\n" for key in sorted(options)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()  # = one update per line
