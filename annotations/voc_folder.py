"""Find the annotation files, images and split lists of a VOC folder.

Accepted layouts:
    * Pascal VOC: ``ROOT/Annotations/*.xml``, ``ROOT/JPEGImages/*``,
      optional ``ROOT/ImageSets/Main/<split>.txt`` (one image id per line).
    * A flat LabelImg folder: ``ROOT/*.xml`` beside the images.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from prodet.annotations.image_decode import IMAGE_EXTENSIONS


class VocFolderError(ValueError):
    """The folder is not a VOC layout this converter understands."""


@dataclass(frozen=True)
class VocFolder:
    """The files of one VOC folder; paths are absolute, image names relative to ``root``.

    ``xml_files`` are absolute path strings, sorted by file name. ``images_by_stem`` maps
    an image stem to its image names (sorted). ``stats`` holds ``(name relative to root,
    size, mtime_ns)`` of every input, for ``fingerprint``.

    When ``stats_deferred`` (``discover(root, stat_files=False)``), the annotation and
    image files have not been stat'ed: ``stats`` holds the split files' alone, and an
    image name may be a symbolic link whose target is not a file (the converter finds
    out when it opens it). ``image_names`` lists every image name in directory order;
    ``with_file_stats`` completes the folder from what the converter read.
    """

    root: Path
    annotation_dir: Path
    image_dir: Path
    xml_files: tuple[str, ...]
    images_by_stem: dict[str, tuple[str, ...]]
    split_files: tuple[Path, ...] = field(default=())
    stats: tuple[tuple[str, int, int], ...] = field(default=())
    stats_deferred: bool = False
    image_names: tuple[str, ...] = field(default=())


def _xml_names(directory: Path) -> list[str]:
    """Names of the ``.xml`` files (or links to one) in ``directory``, sorted.

    A regular file needs no system call (the directory entry's type says it).
    """
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if e.name.lower().endswith(".xml") and e.is_file())


def _scan_images(directory: Path, stat_files: bool) -> list[tuple[str, str]]:
    """``(name, stem)`` of the image files of ``directory``, in directory order.

    With ``stat_files``, a link is kept only when its target is a file (one ``stat``
    each); without, every link is kept and regular files need no system call at all.
    """
    found: list[tuple[str, str]] = []
    with os.scandir(directory) as it:
        for e in it:
            name = e.name
            dot = name.rfind(".")  # os.path.splitext, without its call overhead per file
            stem = name[:dot]
            if dot < 1 or name[dot:].lower() not in IMAGE_EXTENSIONS or not stem.strip("."):
                continue
            if e.is_file(follow_symlinks=False) or (
                e.is_symlink() and (not stat_files or e.is_file())
            ):
                found.append((name, stem))
    return found


def discover(root: str | os.PathLike[str], *, stat_files: bool = True) -> VocFolder:
    """List a VOC folder's annotations, images and split files.

    Args:
        stat_files: False leaves the annotation and image files' sizes and mtimes out of
            ``stats`` (about one ``stat`` per file saved here): the converter then takes
            them from the files it opens, and ``with_file_stats`` adds them.

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
    xml_names = _xml_names(annotation_dir)
    if not xml_names:
        raise VocFolderError(
            f"{root}: no .xml annotations found in {annotation_dir}; expected a Pascal VOC "
            "folder (Annotations/, JPEGImages/, ImageSets/Main/) or a LabelImg folder of .xml files"
        )
    images = _scan_images(image_dir, stat_files) if image_dir.is_dir() else []
    image_prefix = image_dir.relative_to(root_path).as_posix()
    image_prefix = "" if image_prefix == "." else image_prefix + "/"
    images_by_stem: dict[str, list[str]] = {}
    for name, stem in sorted(images):
        images_by_stem.setdefault(stem, []).append(image_prefix + name)
    image_names = tuple([image_prefix + name for name, _ in images])
    split_dir = root_path / "ImageSets" / "Main"
    split_files = tuple(sorted(split_dir.glob("*.txt"))) if split_dir.is_dir() else ()
    annotation_prefix = _annotation_prefix(root_path, annotation_dir)
    stats: list[tuple[str, int, int]] = []
    if stat_files:
        stats += [_stat_line(annotation_dir, annotation_prefix, n) for n in xml_names]
        stats += [_stat_line(root_path, "", n) for n in image_names]  # in directory order
    for p in split_files:
        st = p.stat()
        stats.append((str(p.relative_to(root_path)), st.st_size, st.st_mtime_ns))
    prefix = str(annotation_dir) + os.sep
    return VocFolder(
        root=root_path,
        annotation_dir=annotation_dir,
        image_dir=image_dir,
        xml_files=tuple([prefix + n for n in xml_names]),
        images_by_stem={k: tuple(v) for k, v in images_by_stem.items()},
        split_files=split_files,
        stats=tuple(stats),
        stats_deferred=not stat_files,
        image_names=image_names,
    )


def _annotation_prefix(root: Path, annotation_dir: Path) -> str:
    return annotation_dir.relative_to(root).as_posix() + "/"


def with_file_stats(
    folder: VocFolder,
    xml_stats: Iterable[tuple[int, int]],
    image_stats: dict[str, tuple[int, int] | None],
) -> VocFolder:
    """``folder`` with its annotation and image files' stats, as ``discover(root)`` has them.

    Args:
        xml_stats: each annotation file's ``(size, mtime_ns)``, in ``xml_files`` order.
        image_stats: ``(size, mtime_ns)`` of the images the converter opened, by name
            relative to the root, or None for a name whose target is not a file. Images
            not in it (never opened) are stat'ed here.

    Raises:
        ValueError: the folder already has them, or not one pair per annotation file.
    """
    if not folder.stats_deferred:
        raise ValueError("the folder already holds its annotation and image files' stats")
    prefix = _annotation_prefix(folder.root, folder.annotation_dir)
    try:
        lines = [
            (prefix + os.path.basename(path), size, mtime)
            for path, (size, mtime) in zip(folder.xml_files, xml_stats, strict=True)
        ]
    except ValueError:
        raise ValueError(
            f"expected (size, mtime_ns) for each of the {len(folder.xml_files)} annotation files"
        ) from None
    root = str(folder.root)
    for name in folder.image_names:
        if name in image_stats:
            known = image_stats[name]
        else:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            known = (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None
        if known is not None:
            lines.append((name, *known))
    return replace(folder, stats=(*lines, *folder.stats), stats_deferred=False)


def _stat_line(directory: Path, prefix: str, name: str) -> tuple[str, int, int]:
    st = os.stat(os.path.join(directory, name))
    return (prefix + name, st.st_size, st.st_mtime_ns)


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
    if folder.stats_deferred:
        raise ValueError(
            "fingerprint needs the annotation and image files' stats: discover the folder "
            "with stat_files=True or add them with with_file_stats"
        )
    lines = [f"{name}\0{size}\0{mtime}\n" for name, size, mtime in folder.stats]
    lines += [f"{key}={options[key]}\n" for key in sorted(options)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()  # = one update per line
