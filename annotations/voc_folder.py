"""Find the annotation files, images and split lists of a VOC folder.

Accepted layouts:
    * Pascal VOC: ``ROOT/Annotations/*.xml``, ``ROOT/JPEGImages/*``,
      optional ``ROOT/ImageSets/Main/<split>.txt`` (one image id per line).
    * A flat LabelImg folder: ``ROOT/*.xml`` beside the images.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

_IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".jpe"}
)


class VocFolderError(ValueError):
    """The folder is not a VOC layout this converter understands."""


@dataclass(frozen=True)
class VocFolder:
    """The files of one VOC folder; paths are absolute, image names relative to ``root``."""

    root: Path
    annotation_dir: Path
    image_dir: Path
    xml_files: tuple[Path, ...]
    images_by_stem: dict[str, tuple[str, ...]]
    split_files: tuple[Path, ...] = field(default=())
    stats: tuple[tuple[str, int, int], ...] = field(default=())


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return [e for e in it if e.is_file()]


def _stat_line(entry: os.DirEntry[str], prefix: str) -> tuple[str, int, int]:
    st = entry.stat()
    return (prefix + entry.name, st.st_size, st.st_mtime_ns)


def discover(root: str | os.PathLike[str]) -> VocFolder:
    """List a VOC folder's annotations, images and split files.

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
    xml_entries = sorted(
        (e for e in _scan(annotation_dir) if e.name.lower().endswith(".xml")), key=lambda e: e.name
    )
    if not xml_entries:
        raise VocFolderError(
            f"{root}: no .xml annotations found in {annotation_dir}; expected a Pascal VOC "
            "folder (Annotations/, JPEGImages/, ImageSets/Main/) or a LabelImg folder of .xml files"
        )
    image_entries = (
        [e for e in _scan(image_dir) if os.path.splitext(e.name)[1].lower() in _IMAGE_EXTENSIONS]
        if image_dir.is_dir()
        else []
    )
    images_by_stem: dict[str, list[str]] = {}
    image_prefix = image_dir.relative_to(root_path).as_posix()
    image_prefix = "" if image_prefix == "." else image_prefix + "/"
    for e in sorted(image_entries, key=lambda e: e.name):
        images_by_stem.setdefault(os.path.splitext(e.name)[0], []).append(image_prefix + e.name)
    split_dir = root_path / "ImageSets" / "Main"
    split_files = tuple(sorted(split_dir.glob("*.txt"))) if split_dir.is_dir() else ()
    annotation_prefix = annotation_dir.relative_to(root_path).as_posix() + "/"
    stats = tuple(
        [_stat_line(e, annotation_prefix) for e in xml_entries]
        + [_stat_line(e, image_prefix) for e in image_entries]
        + [
            (str(p.relative_to(root_path)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in split_files
        ]
    )
    return VocFolder(
        root=root_path,
        annotation_dir=annotation_dir,
        image_dir=image_dir,
        xml_files=tuple(Path(e.path) for e in xml_entries),
        images_by_stem={k: tuple(v) for k, v in images_by_stem.items()},
        split_files=split_files,
        stats=stats,
    )


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
    """Digest of every input's name, size and mtime plus the conversion options."""
    h = hashlib.sha256()
    for name, size, mtime in folder.stats:
        h.update(f"{name}\0{size}\0{mtime}\n".encode())
    for key in sorted(options):
        h.update(f"{key}={options[key]}\n".encode())
    return h.hexdigest()
