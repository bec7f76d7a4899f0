"""The images named by ``prodet predict``'s arguments, walked lazily and reproducibly.

An argument is a folder (every image below it, recursively), a glob (``shelf/**/*.jpg``:
``*``, ``?`` and ``[...]`` match within one path component, ``**`` any number of folders),
or an image file. Images are the files with an image extension
(``annotations.image_decode.IMAGE_EXTENSIONS``); hidden files and folders, links to folders
and the output folder itself are skipped. Arguments are walked in the order given; each
folder in ``(stem, name)`` order (``serve.directory_listing``), depth first, so two walks
over unchanged inputs give the same images in the same order, and no walk ever holds a
list of all the images.

Names and keys (what outputs are named after):

* Batch mode (any folder or glob argument): ``ImageInput.name`` is the image's path
  relative to the arguments' common root (for one folder, the folder itself), ``/``
  separated; ``key`` is that path without its extension (``aisle3/img001``). Outputs
  mirror the folders, so equal stems in different folders never collide. Two images of
  one folder sharing a stem (``a.jpg`` and ``a.png``) would share every output name: the
  first in name order gets it and the others carry a ``problem`` (they are reported, not
  detected). Arguments that overlap, or a file argument beside a folder argument that
  holds an image of its stem, are not checked: give disjoint arguments.
* File mode (only image files): ``name`` is the argument as given and ``key`` its stem,
  with ``-2``, ``-3``, ... for a stem given again, as ``prodet predict`` always named them.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prodet.annotations.image_decode import IMAGE_EXTENSIONS
from prodet.serve.directory_listing import DEFAULT_RUN_SIZE, Entry, sorted_entries

_MAGIC = frozenset("*?[")
_EVERY_IMAGE = ("**", "*")


@dataclass(frozen=True)
class ImageInput:
    """One image to detect objects in.

    Attributes:
        path: the file to read (the argument joined with the path below it).
        name: its path relative to the run's root, ``/`` separated (file mode: the
            argument as given); COCO's ``file_name``.
        key: what its outputs are named after (see the module docstring).
        problem: why it must not be detected (a stem taken in its folder), or None.
    """

    path: str
    name: str
    key: str
    problem: str | None = None


def _is_glob(argument: str) -> bool:
    return any(c in _MAGIC for c in argument)


def _split_glob(pattern: str) -> tuple[str, tuple[str, ...]]:
    """``(root, parts)``: the leading components without wildcards, and the rest."""
    components = pattern.split(os.sep)
    fixed = 0
    while fixed < len(components) - 1 and not _is_glob(components[fixed]):
        fixed += 1
    root = os.sep.join(components[:fixed]) or ("." if not pattern.startswith(os.sep) else os.sep)
    parts: list[str] = []
    for part in components[fixed:]:
        if part and not (part == "**" and parts and parts[-1] == "**"):
            parts.append(part)
    if parts and parts[-1] == "**":  # 'shelf/**': every image below
        parts.append("*")
    return root, tuple(parts)


def _is_image(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


class ImageSource:
    """The images of ``prodet predict``'s arguments; iterate it (again) to walk them.

    Args:
        arguments: folders, globs and image files.
        exclude: a folder never to enter (the output folder, when it lies inside an
            input folder).
        run_size: the most folder entries held in memory at once (see
            ``serve.directory_listing``).
    """

    def __init__(
        self,
        arguments: Sequence[str],
        *,
        exclude: str | None = None,
        run_size: int = DEFAULT_RUN_SIZE,
    ) -> None:
        if not arguments:
            raise ValueError("give at least one image file, folder or glob")
        self.arguments = tuple(arguments)
        self.file_mode = not any(os.path.isdir(a) or _is_glob(a) for a in arguments)
        self.exclude = exclude
        self.run_size = run_size
        roots = [self._root(a) for a in arguments]
        self.root = os.path.commonpath([os.path.abspath(r) for r in roots])

    @staticmethod
    def _root(argument: str) -> str:
        if _is_glob(argument):
            return _split_glob(argument)[0]
        return argument if os.path.isdir(argument) else os.path.dirname(argument) or "."

    def __iter__(self) -> Iterator[ImageInput]:
        if self.file_mode:
            yield from self._files()
            return
        excluded = self._excluded()
        for argument in self.arguments:
            root = self._root(argument)
            relative = os.path.relpath(os.path.abspath(root), self.root)
            prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            if _is_glob(argument):
                parts = _split_glob(argument)[1]
            elif os.path.isdir(argument):
                parts = _EVERY_IMAGE
            else:
                stem = os.path.splitext(os.path.basename(argument))[0]
                yield ImageInput(argument, prefix + os.path.basename(argument), prefix + stem)
                continue
            if parts and os.path.isdir(root):
                yield from self._walk(prefix, root, parts, excluded)

    def _files(self) -> Iterator[ImageInput]:
        taken: set[str] = set()
        for argument in self.arguments:
            stem = os.path.splitext(os.path.basename(argument))[0] or "image"
            key, n = stem, 1
            while key in taken:
                n += 1
                key = f"{stem}-{n}"
            taken.add(key)
            yield ImageInput(argument, argument, key)

    def _excluded(self) -> tuple[int, int] | None:
        if self.exclude is None:
            return None
        try:
            st = os.stat(self.exclude)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _walk(
        self,
        prefix: str,
        directory: str,
        parts: tuple[str, ...],
        excluded: tuple[int, int] | None,
    ) -> Iterator[ImageInput]:
        """The images of ``directory`` matching ``parts``; ``prefix`` is the folder's name
        relative to the common root (``""`` or ending in ``/``)."""
        previous: Entry | None = None
        for entry in sorted_entries(directory, run_size=self.run_size):
            if (
                entry.is_dir
                and excluded is not None
                and self._is_excluded(directory, entry, excluded)
            ):
                continue
            if parts[0] == "**":
                if entry.is_dir:  # ** takes this folder and stays
                    yield from self._recurse(prefix, directory, entry, parts, excluded)
                rest = parts[1:]  # ** takes no folder
            else:
                rest = parts
            if not fnmatch.fnmatchcase(entry.name, rest[0]):
                continue
            if entry.is_dir:
                if len(rest) > 1:
                    yield from self._recurse(prefix, directory, entry, rest[1:], excluded)
                continue
            if len(rest) > 1 or not _is_image(entry.name):
                continue
            name = prefix + entry.name
            key = name[: len(name) - len(entry.name) + len(entry.stem)]
            problem = None
            if previous is not None and previous.stem == entry.stem:
                problem = (
                    f"{previous.name} in the same folder has the stem {entry.stem!r}, and "
                    "outputs are named by stem: rename one of them"
                )
            else:
                previous = entry
            yield ImageInput(os.path.join(directory, entry.name), name, key, problem)

    def _recurse(
        self,
        prefix: str,
        directory: str,
        entry: Entry,
        parts: tuple[str, ...],
        excluded: tuple[int, int] | None,
    ) -> Iterator[ImageInput]:
        path = os.path.join(directory, entry.name)
        yield from self._walk(prefix + entry.name + "/", path, parts, excluded)

    @staticmethod
    def _is_excluded(directory: str, entry: Entry, excluded: tuple[int, int]) -> bool:
        try:
            st = os.stat(os.path.join(directory, entry.name), follow_symlinks=False)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == excluded
