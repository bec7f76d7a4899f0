"""Write LabelImg-style Pascal VOC annotations and ``ImageSets/Main`` split lists.

Boxes come in the dataset's convention (``x1, y1, x2, y2``, 0-based continuous pixels,
see ``annotations.schema``) and are written as VOC's 1-based inclusive integers through
``annotations.boxes.xyxy_to_voc``, rounded to the nearest pixel, so that reading a file
back (``voc_to_xyxy``) returns every box within half a pixel. Texts (class names, file
name, path) are escaped as ``annotations.xml_text`` says, so any name can be written and
``voc_xml`` reads it back unchanged; names XML can hold as they are stay as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from prodet.annotations.boxes import xyxy_to_voc
from prodet.annotations.xml_text import escape_xml_text


@dataclass(frozen=True)
class VocObject:
    """One object to write.

    Attributes:
        name: the class name.
        box: ``x1, y1, x2, y2`` in 0-based continuous pixels, inside the image.
        truncated: VOC's flag: the box does not cover the object's full extent (cut by
            the image border or by an occluder).
        difficult: VOC's flag: hard to recognise; evaluation ignores the object.
        pose: VOC's pose (``"Unspecified"`` as LabelImg writes it).
        score: a detector's confidence, written as a non-standard ``<score>`` child of the
            ``<object>`` when given (LabelImg, CVAT's importer and ``voc_xml`` read their
            children by tag and ignore it; LabelImg drops it when it saves the file).
    """

    name: str
    box: tuple[float, float, float, float]
    truncated: bool = False
    difficult: bool = False
    pose: str = "Unspecified"
    score: float | None = None


def voc_box(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int]:
    """``x1, y1, x2, y2`` (0-based continuous) to VOC ``xmin, ymin, xmax, ymax`` integers.

    Raises:
        ValueError: the box is inverted, leaves the ``width x height`` image, or rounds
            to less than one pixel.
    """
    x1, y1, x2, y2 = box
    if not (0.0 <= x1 < x2 <= width and 0.0 <= y1 < y2 <= height):
        raise ValueError(
            f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is not a non-empty x1, y1, x2, y2 box "
            f"inside the {width}x{height} image; clip it to the image first"
        )
    xmin, ymin, xmax, ymax = (round(v) for v in xyxy_to_voc(x1, y1, x2, y2))
    if xmax < xmin or ymax < ymin:
        raise ValueError(
            f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is narrower than one pixel; drop it"
        )
    return xmin, ymin, xmax, ymax


def _child(parent: etree._Element, tag: str, text: str | int) -> etree._Element:
    el = etree.SubElement(parent, tag)
    el.text = escape_xml_text(text) if isinstance(text, str) else str(text)
    return el


def annotation_xml(
    *,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[VocObject],
    depth: int = 3,
    folder: str = "JPEGImages",
    path: str | None = None,
    database: str = "Unknown",
) -> bytes:
    """The bytes of one LabelImg-style annotation (tab-indented, no XML declaration).

    Args:
        filename: the image's file name.
        width, height, depth: the image's size in pixels and its number of channels.
        objects: the boxes to write, in order.
        folder: the image folder's name, as LabelImg writes it.
        path: the image's path; default ``folder/filename``, relative, so the bytes do
            not depend on where the dataset is written.
        database: ``<source><database>``.

    Raises:
        ValueError: an empty size or class name, or a box ``voc_box`` refuses (the
            message names the object's index and class).
    """
    if width < 1 or height < 1 or depth < 1:
        raise ValueError(f"{filename}: image size must be positive, got {width}x{height}x{depth}")
    root = etree.Element("annotation")
    _child(root, "folder", folder)
    _child(root, "filename", filename)
    _child(root, "path", path if path is not None else f"{folder}/{filename}")
    source = etree.SubElement(root, "source")
    _child(source, "database", database)
    size = etree.SubElement(root, "size")
    _child(size, "width", width)
    _child(size, "height", height)
    _child(size, "depth", depth)
    _child(root, "segmented", 0)
    for index, obj in enumerate(objects):
        if not obj.name.strip():
            raise ValueError(f"{filename}: object {index} has an empty class name")
        try:
            xmin, ymin, xmax, ymax = voc_box(obj.box, width, height)
        except ValueError as exc:
            raise ValueError(f"{filename}: object {index} ({obj.name!r}): {exc}") from None
        el = etree.SubElement(root, "object")
        _child(el, "name", obj.name)
        _child(el, "pose", obj.pose)
        _child(el, "truncated", int(obj.truncated))
        _child(el, "difficult", int(obj.difficult))
        if obj.score is not None:
            _child(el, "score", f"{obj.score:.5f}")
        bndbox = etree.SubElement(el, "bndbox")
        for tag, value in zip(
            ("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmax, ymax), strict=True
        ):
            _child(bndbox, tag, value)
    etree.indent(root, space="\t")
    return etree.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def write_image_sets(root: str | os.PathLike[str], splits: Mapping[str, Sequence[str]]) -> None:
    """Write ``root/ImageSets/Main/<split>.txt``, one image id per line.

    Raises:
        ValueError: a split name that is not a plain file stem, or an id with whitespace.
    """
    directory = Path(root) / "ImageSets" / "Main"
    directory.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        if not name or os.sep in name or "/" in name or name.startswith("."):
            raise ValueError(f"split name {name!r} must be a plain file stem such as 'trainval'")
        bad = [i for i in ids if not i or any(c.isspace() for c in i)]
        if bad:
            raise ValueError(
                f"split {name!r}: image ids must be non-empty without spaces: {bad[:3]}"
            )
        (directory / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
