"""Parse one Pascal VOC XML annotation with lxml, tolerating what real tools write.

Handled variants (see ``../shared/data/voc_xml_zoo``): official VOC 2007/2011/2012,
LabelImg (macOS, Windows, 0x0 size), labelme2voc (empty ``<difficult/>``), datumaro/CVAT
exports (no ``<size>``, float coordinates, ``<occluded>``), Roboflow's ``xmin, xmax, ymin,
ymax`` order, relaxed Kaggle VOC (objects with only ``name`` and ``bndbox``), GBK and
UTF-8-with-BOM encodings, numeric character references.

Coordinates are returned exactly as written (VOC's 1-based pixel indices, possibly
float); conversion to the dataset's box convention happens in ``boxes.py``. Class names and
``<filename>`` are unescaped (``annotations.xml_text``: ``_xHHHH_`` is the character
``U+HHHH``), so names that XML cannot hold, written by ``voc_writer``, come back as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from lxml import etree

from prodet.annotations.xml_text import unescape_xml_text


class VocFormatError(ValueError):
    """The file is not a readable Pascal VOC annotation; ``str()`` is one line naming it."""


class RawObject(NamedTuple):
    """One ``<object>`` as written. ``index`` is its 0-based position in the file.

    A named tuple: built once per object in the conversion's hot loop, where it is several
    times cheaper to make than a frozen dataclass.
    """

    # Shadows tuple.index on purpose: the public field name (boxes.py and reports use it).
    index: int  # type: ignore[assignment]
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool
    truncated: bool
    pose: str


@dataclass(frozen=True)
class ObjectIssue:
    """An ``<object>`` that could not be read (e.g. no ``<bndbox>``); it is skipped."""

    index: int
    message: str


@dataclass(frozen=True)
class RawAnnotation:
    """The content of one annotation file.

    ``width``/``height`` are as written (LabelImg sometimes writes 0) or None when absent.
    """

    filename: str
    width: int | None
    height: int | None
    objects: tuple[RawObject, ...]
    issues: tuple[ObjectIssue, ...]


# remove_blank_text drops whitespace-only text nodes between elements: every text read
# here is stripped anyway, and the tree is smaller to build and walk.
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    remove_comments=True,
    remove_pis=True,
    remove_blank_text=True,
)
_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
_BOX_TAG_SET = frozenset(_BOX_TAGS)
_SIZE_TAGS = frozenset(("width", "height"))
_OBJECT_TAGS = frozenset(("name", "bndbox", "difficult", "truncated", "pose"))


def _parse_tree(data: bytes, source: str) -> etree._Element:
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        # An undeclared legacy encoding (GBK from Windows LabelImg) fails as UTF-8.
        if b"encoding" not in data[:100] and "encoding" in str(exc).lower():
            try:
                text = data.decode("gbk")
                return etree.fromstring(text.encode("utf-8"), _PARSER)
            except (UnicodeDecodeError, etree.XMLSyntaxError):
                pass
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VocFormatError(f"{source}: malformed XML ({first})") from None


def _text(el: etree._Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


_FALSE_FLAGS = frozenset(("", "0", "0.0", "false", "no", "unspecified"))
_isfinite = math.isfinite


def _flag(el: etree._Element | None) -> bool:
    return el is not None and (el.text or "").strip().lower() not in _FALSE_FLAGS


def _number(text: str | None) -> float | None:
    """The value of a numeric field, or None when it is absent, empty, not a number, nan or inf.

    ``float`` ignores surrounding whitespace, so the element's raw text will do.
    """
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if _isfinite(value) else None


def _first_children(el: etree._Element, wanted: frozenset[str]) -> dict[str, etree._Element]:
    """The first child of each ``wanted`` tag (what ``find`` returns), in one pass.

    One pass over the children is several times cheaper than one ``find()`` per tag: each
    lxml element proxy costs about as much as a ``find()``.
    """
    found: dict[str, etree._Element] = {}
    for child in el:
        tag = child.tag
        if tag in wanted and tag not in found:
            found[tag] = child
    return found


def _value(el: etree._Element | None) -> float | None:
    return _number(el.text) if el is not None else None


def _size(size: etree._Element | None) -> tuple[int | None, int | None]:
    if size is None:
        return None, None
    fields = _first_children(size, _SIZE_TAGS)
    w, h = _value(fields.get("width")), _value(fields.get("height"))
    return (None if w is None else int(w)), (None if h is None else int(h))


def _read_object(index: int, obj: etree._Element) -> RawObject | ObjectIssue:
    fields = _first_children(obj, _OBJECT_TAGS)
    name = unescape_xml_text(_text(fields.get("name")))
    if not name:
        return ObjectIssue(index, "object has no <name>")
    bndbox = fields.get("bndbox")
    if bndbox is None:
        return ObjectIssue(index, f"object {name!r} has no <bndbox>")
    box_fields = _first_children(bndbox, _BOX_TAG_SET)
    coords = []
    for tag in _BOX_TAGS:
        value = _value(box_fields.get(tag))
        if value is None:
            return ObjectIssue(index, f"object {name!r}: <bndbox><{tag}> missing or not a number")
        coords.append(value)
    xmin, ymin, xmax, ymax = coords
    return RawObject(
        index,
        name,
        xmin,
        ymin,
        xmax,
        ymax,
        _flag(fields.get("difficult")),
        _flag(fields.get("truncated")),
        _text(fields.get("pose")) or "Unspecified",
    )


def parse_voc_xml(data: bytes, source: str) -> RawAnnotation:
    """Parse the bytes of one VOC annotation.

    Args:
        data: the file's raw bytes (any declared encoding, BOM allowed).
        source: the file's name, used in error messages.

    Returns:
        The annotation with only the ``<name>`` directly under each ``<object>`` (never
        ``<owner>``'s or ``<part>``'s) and ``<bndbox>`` children read by tag.

    Raises:
        VocFormatError: malformed XML, or XML of another format (LabelMe, CVAT for images).
    """
    root = _parse_tree(data, source)
    if root.tag != "annotation":
        hint = (
            " (CVAT for images XML? export the task as 'PASCAL VOC')"
            if root.tag == ("annotations")
            else ""
        )
        raise VocFormatError(
            f"{source}: not Pascal VOC: root element is <{root.tag}>, expected <annotation>{hint}"
        )
    # One pass over the root's children: the first <filename>/<size> (as ``find`` would
    # return) and every direct <object>.
    filename_el: etree._Element | None = None
    size_el: etree._Element | None = None
    has_imagesize = False
    object_els: list[etree._Element] = []
    for child in root:
        tag = child.tag
        if tag == "object":
            object_els.append(child)
        elif tag == "filename":
            if filename_el is None:
                filename_el = child
        elif tag == "size":
            if size_el is None:
                size_el = child
        elif tag == "imagesize":
            has_imagesize = True
    objects: list[RawObject] = []
    issues: list[ObjectIssue] = []
    for index, obj in enumerate(object_els):
        item = _read_object(index, obj)
        if type(item) is RawObject:
            objects.append(item)
        else:
            issues.append(item)  # type: ignore[arg-type]
    if has_imagesize or (
        object_els and not objects and all(o.find("bndbox") is None for o in object_els)
    ):
        raise VocFormatError(
            f"{source}: not Pascal VOC: objects have no <bndbox> (LabelMe XML with "
            "<polygon>/<imagesize>? convert it to VOC first, e.g. with labelme2voc)"
        )
    width, height = _size(size_el)
    return RawAnnotation(
        filename=unescape_xml_text(_text(filename_el)),
        width=width,
        height=height,
        objects=tuple(objects),
        issues=tuple(issues),
    )
