"""The ``_xHHHH_`` escape: any string survives being XML text, and the VOC writer/reader pair."""

from __future__ import annotations

import random

import pytest
from lxml import etree

from prodet.annotations.voc_writer import VocObject, annotation_xml
from prodet.annotations.voc_xml import parse_voc_xml
from prodet.annotations.xml_text import escape_xml_text, unescape_xml_text

HARD_NAMES = [
    "can",
    "<b&\"q'>",
    "ctl\x01\x1fend",
    "\r\n",
    " padded\t",
    "\u2003em\x85",
    "_x0041_",
    "_x0041_x0042_",
    "_x1234\r",
    "bad\udc80utf8",
    "\ufffe\uffff",
    "😀 emoji",
]


def _through_xml(text: str) -> str:
    """Write ``text`` as an element's text, parse it back, strip it as ``voc_xml`` does."""
    element = etree.Element("name")
    element.text = text
    return (etree.fromstring(etree.tostring(element, encoding="utf-8")).text or "").strip()


@pytest.mark.parametrize("name", HARD_NAMES)
def test_escaped_text_is_valid_xml_and_comes_back(name: str) -> None:
    assert unescape_xml_text(_through_xml(escape_xml_text(name))) == name


def test_random_strings_round_trip() -> None:
    pieces = ["_", "x", "0", "4", "A", "f", "_x", "\r", "\x01", " ", "\t", "\n", "a", "<", "\udc80"]
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        assert unescape_xml_text(_through_xml(escape_xml_text(text))) == text, repr(text)


def test_plain_names_are_written_as_they_are() -> None:
    for name in ("can", "Coca-Cola 0.5 l", "a_b", "x_y_z", "_x12_", "<&>'\""):
        assert escape_xml_text(name) == name
    assert escape_xml_text("a\x01b") == "a_x0001_b"
    assert escape_xml_text(" a ") == "_x0020_a_x0020_"
    assert escape_xml_text("_x0041_") == "_x005F_x0041_"
    assert unescape_xml_text("_x0041_") == "A"  # as written by another tool: an escape


def test_voc_writer_and_reader_round_trip_hard_class_names() -> None:
    names = [n for n in HARD_NAMES if n.strip()]  # blank names are refused, as before
    objects = [VocObject(name, (1.0, 2.0, 5.0, 6.0)) for name in names]
    data = annotation_xml(
        filename="we\x01ird.jpg", width=10, height=10, objects=objects, path="/x/we\x01ird.jpg"
    )
    raw = parse_voc_xml(data, "weird.xml")
    assert [o.name for o in raw.objects] == names
    assert raw.filename == "we\x01ird.jpg"
    assert raw.issues == ()


def test_voc_writer_keeps_plain_names_byte_for_byte() -> None:
    data = annotation_xml(
        filename="a.jpg", width=10, height=10, objects=[VocObject("can", (0, 0, 5, 5))]
    )
    assert b"<name>can</name>" in data and b"_x" not in data


def test_scores_are_an_extra_child_readers_ignore() -> None:
    data = annotation_xml(
        filename="a.jpg", width=10, height=10, objects=[VocObject("can", (0, 0, 5, 5), score=0.5)]
    )
    assert b"<score>0.50000</score>" in data
    raw = parse_voc_xml(data, "a.xml")
    assert [(o.name, o.xmin, o.ymin, o.xmax, o.ymax) for o in raw.objects] == [
        ("can", 1.0, 1.0, 5.0, 5.0)
    ]
