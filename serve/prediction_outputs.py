"""What ``prodet predict`` writes into OUT, one image at a time: JSON (+ PNG) or Pascal VOC.

Every file is written atomically (a temporary file in ``OUT/.partial``, fsynced, then
renamed into place), and each image's last file is its *marker*, so "this image's output
is complete" is "its marker exists": a run killed at any point leaves whole files only,
and the next run skips exactly the finished images and clears ``OUT/.partial``. When a
later file of an image cannot be written, the earlier ones are removed again. A full disk
(``ENOSPC``, ``EDQUOT``) raises ``OutputSpaceError``, which stops the run.

Formats (``serve.coco_outputs`` has the third, COCO):

* ``json``: ``OUT/KEY.json``, the HTTP API's ``DetectResponse`` (without timings) plus
  ``image``, boxes ``x1, y1, x2, y2`` in pixels of the original, EXIF-oriented image; and
  with drawing, ``OUT/KEY.png`` first, the decoded image with its boxes.
* ``voc``: a Pascal VOC folder that ``prodet convert`` reads back and LabelImg opens
  (open ``OUT/JPEGImages``, save to ``OUT/Annotations``): ``OUT/Annotations/ID.xml``
  (the marker) and ``OUT/JPEGImages/ID.EXT``, a symbolic link to the original image (or a
  copy). ``ID`` is the key with ``%`` written ``%25`` and ``/`` written ``%2F``, because
  VOC folders are flat: for a flat input folder it is the image's stem. Boxes are in the
  image's *stored* pixel layout, as VOC tools and ``prodet convert`` read them (undoing
  the EXIF rotation the detector saw), rounded as ``annotations.voc_writer`` does; each
  object carries its ``<score>``. Class names are escaped by ``annotations.xml_text``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from prodet.annotations.atomic import atomic_write_bytes
from prodet.annotations.image_decode import IMAGE_EXTENSIONS
from prodet.annotations.orientation import INVERSE, orient_box, orient_size
from prodet.annotations.voc_writer import VocObject, annotation_xml, voc_box
from prodet.serve.image_source import ImageInput
from prodet.serve.predict import ImagePrediction

TEMP_DIR = ".partial"
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "GIF": ".gif",
    "TIFF": ".tif",
    "PPM": ".ppm",
}
VocImages = Literal["link", "copy"]


class OutputSpaceError(RuntimeError):
    """The device holding OUT is full; the message names OUT and says how to resume."""

    def __init__(self, root: Path, cause: OSError) -> None:
        super().__init__(
            f"no space left for {root} ({cause.strerror or cause}); every image written so "
            "far is complete and nothing half-written was left: free some space and rerun "
            "the same command to resume"
        )


class OutputBusyError(RuntimeError):
    """Another ``prodet predict`` is writing into the same OUT."""


class OutputFolder:
    """OUT: the lock, the temporary folder, and writes that turn a full disk into
    ``OutputSpaceError``. Use as a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp = root / TEMP_DIR
        self._lock: int | None = None

    def __enter__(self) -> OutputFolder:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(f"another prodet predict is writing into {self.root}") from None
        self._lock = fd
        shutil.rmtree(self.temp, ignore_errors=True)  # what a killed run left
        self.temp.mkdir()
        return self

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    @contextmanager
    def space_checked(self) -> Iterator[None]:
        """Turn ``ENOSPC``/``EDQUOT`` raised inside into ``OutputSpaceError``."""
        try:
            yield
        except OSError as exc:
            if exc.errno in SPACE_ERRNOS:
                raise OutputSpaceError(self.root, exc) from exc
            raise

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Write ``path`` atomically."""
        with self.space_checked():
            atomic_write_bytes(path, data, temp_dir=self.temp)

    def link(self, path: Path, target: str) -> None:
        """Make ``path`` a symbolic link to ``target``, atomically."""
        with self.space_checked():
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.temp / f".{path.name}.{secrets.token_hex(8)}.tmp"
            os.symlink(target, temp)
            try:
                os.replace(temp, path)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise

    @staticmethod
    def discard(paths: Iterable[Path]) -> None:
        """Remove files written for an image whose later files failed (best effort)."""
        for path in paths:
            with suppress(OSError):
                path.unlink(missing_ok=True)


class PredictionWriter:
    """The outputs of one format; subclasses name the files and write them."""

    def __init__(self, folder: OutputFolder) -> None:
        self.folder = folder

    def marker(self, item: ImageInput) -> Path:
        """The file written last for ``item``: it exists once the output is complete."""
        raise NotImplementedError

    def complete(self, item: ImageInput) -> bool:
        """Whether ``item``'s output is complete (a run skips it then)."""
        return os.path.lexists(self.marker(item))

    def shown(self, item: ImageInput) -> Path:
        """The output to name in a report line."""
        return self.marker(item)

    def write(self, item: ImageInput, prediction: ImagePrediction) -> None:
        """Write ``item``'s output (raises ``OutputSpaceError`` on a full disk)."""
        raise NotImplementedError

    def finish(self, items: Iterable[ImageInput]) -> None:
        """Called once all images are done, with a fresh walk over them."""

    def _write_all(self, files: list[tuple[Path, bytes | str]]) -> None:
        """Write ``(path, bytes)`` files, or ``(path, link target)`` links, in order; on a
        failure remove those already written, so the image stays incomplete."""
        done: list[Path] = []
        try:
            for path, content in files:
                if isinstance(content, str):
                    self.folder.link(path, content)
                else:
                    self.folder.write_bytes(path, content)
                done.append(path)
        except BaseException:
            self.folder.discard(done)
            raise


class JsonWriter(PredictionWriter):
    """``OUT/KEY.json``, after ``OUT/KEY.png`` when drawing."""

    def __init__(self, folder: OutputFolder, *, draw: bool) -> None:
        super().__init__(folder)
        self.draw = draw

    def marker(self, item: ImageInput) -> Path:
        return self.folder.root / f"{item.key}.json"

    def shown(self, item: ImageInput) -> Path:
        return self.folder.root / f"{item.key}.{'png' if self.draw else 'json'}"

    def write(self, item: ImageInput, prediction: ImagePrediction) -> None:
        files: list[tuple[Path, bytes | str]] = []
        if self.draw and prediction.annotated_png is not None:
            files.append((self.folder.root / f"{item.key}.png", prediction.annotated_png))
        text = json.dumps(prediction.record, indent=2) + "\n"
        files.append((self.marker(item), text.encode("utf-8")))
        self._write_all(files)


def voc_id(key: str) -> str:
    """The flat VOC id of an output key: ``%`` as ``%25``, ``/`` as ``%2F`` (reversible)."""
    return key.replace("%", "%25").replace("/", "%2F")


def voc_objects(prediction: ImagePrediction) -> tuple[tuple[int, int], list[VocObject]]:
    """The stored ``(width, height)`` and the VOC objects of a prediction.

    Boxes go from the EXIF-oriented image the detector saw back to the stored layout,
    are clipped to the image, and those under one pixel once rounded are left out.
    """
    record = prediction.record
    size = (int(record["width"]), int(record["height"]))
    orientation = prediction.orientation
    stored = orient_size(size, orientation)
    objects = []
    for detection in record["detections"]:
        b = detection["box"]
        box = orient_box((b["x1"], b["y1"], b["x2"], b["y2"]), size, INVERSE[orientation])
        x1, x2 = (min(max(v, 0.0), float(stored[0])) for v in (box[0], box[2]))
        y1, y2 = (min(max(v, 0.0), float(stored[1])) for v in (box[1], box[3]))
        try:
            voc_box((x1, y1, x2, y2), *stored)
        except ValueError:
            continue
        objects.append(
            VocObject(detection["label"], (x1, y1, x2, y2), score=float(detection["score"]))
        )
    return stored, objects


class VocWriter(PredictionWriter):
    """``OUT/JPEGImages/ID.EXT`` (link or copy), then ``OUT/Annotations/ID.xml``."""

    def __init__(self, folder: OutputFolder, *, images: VocImages, classes: Iterable[str]) -> None:
        super().__init__(folder)
        blank = [c for c in classes if not c.strip()]
        if blank:
            raise ValueError(f"VOC cannot hold the blank class name(s) {blank!r}")
        if images not in ("link", "copy"):
            raise ValueError(f"images must be 'link' or 'copy', got {images!r}")
        self.images = images

    def marker(self, item: ImageInput) -> Path:
        return self.folder.root / "Annotations" / f"{voc_id(item.key)}.xml"

    def write(self, item: ImageInput, prediction: ImagePrediction) -> None:
        extension = os.path.splitext(item.name)[1]
        if extension.lower() not in IMAGE_EXTENSIONS:
            extension = _FORMAT_EXTENSIONS.get(prediction.record["format"], ".jpg")
        image_name = voc_id(item.key) + extension
        image_path = self.folder.root / "JPEGImages" / image_name
        original = os.path.abspath(item.path)
        (width, height), objects = voc_objects(prediction)
        xml = annotation_xml(
            filename=image_name,
            width=width,
            height=height,
            objects=objects,
            path=original,
        )
        if self.images == "link":
            image: bytes | str = original
        else:
            with self.folder.space_checked(), open(original, "rb") as fh:
                image = fh.read()
        self._write_all([(image_path, image), (self.marker(item), xml)])
