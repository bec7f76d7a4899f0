"""The VOC parser against real files from many tools (../shared/data/voc_xml_zoo)."""

from __future__ import annotations

import copy
import random

import pytest
from lxml import etree

from prodet.annotations.voc_xml import VocFormatError, _parse_tree, parse_voc_xml
from tests.conftest import shared_path


def parse_zoo(name: str):
    path = shared_path("voc_xml_zoo", name)
    return parse_voc_xml(path.read_bytes(), path.name)


def boxes(ann) -> list[tuple]:
    return [(o.name, o.xmin, o.ymin, o.xmax, o.ymax) for o in ann.objects]


def test_every_zoo_file_parses_or_is_rejected_with_one_line():
    zoo = shared_path("voc_xml_zoo")
    files = sorted(zoo.glob("*.xml")) + sorted((zoo / "synthetic").glob("*.xml"))
    assert len(files) == 29
    rejected = []
    for path in files:
        try:
            ann = parse_voc_xml(path.read_bytes(), path.name)
        except VocFormatError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(path.name + ": ")
            rejected.append(path.name)
        else:
            assert ann.issues == ()
    assert sorted(rejected) == [
        "NOT_VOC_cvat_for_images_train.xml",
        "NOT_VOC_labelme_format_img1.xml",
        "malformed_truncated.xml",
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NOT_VOC_cvat_for_images_train.xml", "root element is <annotations>"),
        ("NOT_VOC_labelme_format_img1.xml", "objects have no <bndbox>"),
        ("synthetic/malformed_truncated.xml", "malformed XML"),
    ],
)
def test_rejections_say_what_is_wrong(name, expected):
    with pytest.raises(VocFormatError, match=expected):
        parse_zoo(name)


def test_owner_name_is_not_an_object():
    ann = parse_zoo("official_voc2007_000002.xml")
    assert boxes(ann) == [("train", 139, 200, 207, 301)]
    assert (ann.width, ann.height) == (335, 500)


def test_part_name_and_box_are_not_objects():
    ann = parse_zoo("datumaro_part_actions_2007_000001.xml")
    assert boxes(ann) == [("cat", 1, 2, 3, 4), ("person", 4, 5, 6, 7)]
    assert ann.objects[0].truncated and not ann.objects[1].truncated
    assert ann.objects[1].pose == "Unspecified"


def test_roboflow_coordinate_order_read_by_tag():
    ann = parse_zoo("roboflow_style_train_001.xml")
    assert boxes(ann) == [("label_0", 2, 1, 5, 2)]


def test_float_coordinates_and_bom():
    ann = parse_zoo("synthetic/utf8_bom_float_coords.xml")
    assert boxes(ann) == [("watch", 90.5, 103, 283, 420.25)]


@pytest.mark.parametrize(
    "name",
    [
        "synthetic/nonascii_utf8_noDecl.xml",
        "synthetic/nonascii_gbk_decl.xml",
        "synthetic/nonascii_numeric_char_refs.xml",
    ],
)
def test_chinese_class_names_decode(name):
    ann = parse_zoo(name)
    assert [o.name for o in ann.objects] == ["手表"]


def test_gbk_without_declaration_falls_back():
    data = (
        "<annotation><object><name>手表</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    ann = parse_voc_xml(data.encode("gbk"), "gbk.xml")
    assert ann.objects[0].name == "手表"


def test_missing_size_and_flags_get_defaults():
    ann = parse_zoo("datumaro_vocexport_a.xml")
    assert (ann.width, ann.height) == (None, None)
    assert boxes(ann) == [("background", 1.0, 2.0, 4.0, 6.0)]
    relaxed = parse_zoo("relaxed_voc_no_pose_trunc_diff.xml")
    assert all(not o.difficult and not o.truncated for o in relaxed.objects)


def test_labelme2voc_empty_flags_are_false():
    ann = parse_zoo("labelme2voc_2011_000003.xml")
    assert [(o.name, o.difficult, o.truncated) for o in ann.objects] == [
        ("person", False, False),
        ("person", False, False),
    ]
    assert (ann.width, ann.height) == (500, 338)


def test_size_zero_is_kept_as_written():
    ann = parse_zoo("labelimg_fruit_apple_1_size0x0.xml")
    assert (ann.width, ann.height) == (0, 0)


def test_no_objects_is_a_negative_image():
    assert parse_zoo("synthetic/empty_no_objects_labelimg_style.xml").objects == ()
    assert parse_zoo("datumaro_empty_no_size_at.xml").objects == ()


def test_numeric_class_names_and_many_objects():
    ann = parse_zoo("custom_script_no_pose_trunc_diff_000005.xml")
    assert len(ann.objects) == 12
    coco = parse_zoo("coco2voc_numeric_names_000005.xml")
    assert [o.name for o in coco.objects] == ["3", "5", "5", "4"]


def test_object_without_bndbox_is_an_issue_not_a_crash():
    data = (
        b"<annotation><object><name>a</name></object><object><name>b</name><bndbox>"
        b"<xmin>1</xmin><ymin>1</ymin><xmax>x</xmax><ymax>5</ymax></bndbox></object>"
        b"<object><name>c</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax>"
        b"<ymax>5</ymax></bndbox></object></annotation>"
    )
    ann = parse_voc_xml(data, "x.xml")
    assert [o.name for o in ann.objects] == ["c"]
    assert [(i.index, "xmax" in i.message) for i in ann.issues] == [(0, False), (1, True)]


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<annotation><object><name>&x;</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>4</xmax><ymax>5</ymax></bndbox></object></annotation>"
    ).encode()
    ann = parse_voc_xml(data, "xxe.xml")
    assert "TOPSECRET" not in repr(ann)
    # The entity stays unresolved, so the object's name is empty: an issue, not an object.
    assert ann.objects == ()
    assert [(i.index, i.message) for i in ann.issues] == [(0, "object has no <name>")]


def _text(el) -> str:
    return (el.text or "").strip() if el is not None else ""


def _number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def find_based_reference(data: bytes) -> tuple:
    """The parser's contract spelled with ``find()`` (how it was first written)."""
    try:
        root = _parse_tree(data, "x.xml")  # building the tree is not what is compared
    except VocFormatError as exc:
        return ("rejected", str(exc))
    objects = root.findall("object")
    if root.tag != "annotation":
        return ("rejected", "root element")
    if root.find("imagesize") is not None or (
        objects and all(o.find("bndbox") is None for o in objects)
    ):
        return ("rejected", "objects have no <bndbox>")
    kept, issues = [], []
    for index, obj in enumerate(objects):
        name = _text(obj.find("name"))
        box = obj.find("bndbox")
        tags = ("xmin", "ymin", "xmax", "ymax")
        coords = [_number(_text(box.find(t))) for t in tags] if box is not None else []
        if not name or box is None or None in coords:
            issues.append(index)
            continue
        flags = [
            _text(obj.find(t)).lower() not in ("", "0", "0.0", "false", "no", "unspecified")
            for t in ("difficult", "truncated")
        ]
        kept.append((index, name, *coords, *flags, _text(obj.find("pose")) or "Unspecified"))
    size = root.find("size")
    dims = [_number(_text(size.find(t))) if size is not None else None for t in ("width", "height")]
    ints = [None if d is None else int(d) for d in dims]
    return ("ok", _text(root.find("filename")), *ints, kept, issues)


def one_pass(data: bytes) -> tuple:
    """``parse_voc_xml`` in the reference's terms."""
    try:
        ann = parse_voc_xml(data, "x.xml")
    except VocFormatError as exc:
        message = str(exc)
        for kind in ("root element", "objects have no <bndbox>"):
            if kind in message:
                return ("rejected", kind)
        return ("rejected", message)
    kept = [
        (o.index, o.name, o.xmin, o.ymin, o.xmax, o.ymax, o.difficult, o.truncated, o.pose)
        for o in ann.objects
    ]
    return ("ok", ann.filename, ann.width, ann.height, kept, [i.index for i in ann.issues])


def test_one_pass_reading_matches_find_semantics_on_mutated_files():
    zoo = shared_path("voc_xml_zoo")
    seeds = [p.read_bytes() for p in sorted(zoo.glob("*.xml"))]
    rng = random.Random(3)
    tags = ["name", "bndbox", "object", "size", "filename", "imagesize", "part", "xmin", "ymax"]
    tags += ["width", "difficult", "pose", "{urn:x}name"]
    outcomes: dict[str, int] = {}
    for _ in range(400):
        try:
            root = etree.fromstring(rng.choice(seeds), etree.XMLParser(remove_comments=False))
        except etree.XMLSyntaxError:
            continue
        elements = [e for e in root.iter() if isinstance(e.tag, str)]
        for _ in range(rng.randint(1, 4)):
            el = rng.choice(elements)
            parent = el.getparent()
            op = rng.randrange(5)
            if op == 0 and parent is not None:
                parent.insert(rng.randrange(len(parent) + 1), copy.deepcopy(el))
            elif op == 1:
                el.text = rng.choice(["", " 7 ", "x", "1e3", "yes", "No", "0.0", None])
            elif op == 2:
                el.tag = rng.choice(tags)
            elif op == 3:
                el.insert(0, etree.Comment("c"))
            elif parent is not None:
                parent.remove(el)
        data = etree.tostring(root)
        expected = find_based_reference(data)
        assert one_pass(data) == expected, data
        kind = expected[0] if expected[0] == "rejected" else ("issues" if expected[-1] else "ok")
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert min(outcomes.get(k, 0) for k in ("ok", "issues", "rejected")) >= 20, outcomes


def test_non_finite_numbers_are_not_numbers():
    data = (
        b"<annotation><size><width>nan</width><height>inf</height></size><object><name>a</name>"
        b"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>inf</xmax><ymax>5</ymax></bndbox></object>"
        b"</annotation>"
    )
    ann = parse_voc_xml(data, "nan.xml")
    assert (ann.width, ann.height) == (None, None)
    assert ann.objects == () and "xmax" in ann.issues[0].message
