"""COCO export: pycocotools loads it and boxes round-trip to the VOC integers."""

from __future__ import annotations

import contextlib
import io

import pytest
from prodet.annotations.boxes import xyxy_to_voc
from prodet.annotations.coco import write_coco
from prodet.annotations.convert import convert_folder
from prodet.annotations.voc_xml import parse_voc_xml
from pycocotools.coco import COCO

from tests.annotations.voc_factory import make_voc
from tests.conftest import shared_path


def load_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def assert_round_trip(voc_root, tmp_path):
    ds = convert_folder(voc_root, workers=1).dataset
    write_coco(ds, tmp_path / "coco.json")
    coco = load_coco(tmp_path / "coco.json")
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(ds.classes[1:])
    checked = 0
    for img in coco.loadImgs(coco.getImgIds()):
        xml = (voc_root / "Annotations" / f"{img['voc_id']}.xml").read_bytes()
        written = parse_voc_xml(xml, img["voc_id"]).objects
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert len(anns) == len(written)
        for ann, obj in zip(anns, written, strict=True):
            x, y, w, h = ann["bbox"]
            assert xyxy_to_voc(x, y, x + w, y + h) == pytest.approx(
                (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
            )
            assert coco.loadCats(ann["category_id"])[0]["name"] == obj.name
            assert ann["area"] == pytest.approx(w * h)
            checked += 1
    return checked


def test_round_trip_synthetic(tmp_path):
    voc = make_voc(
        tmp_path / "voc", {"a": (64, 48, [("can", 11, 21, 50, 40), ("box", 1, 1, 64, 48)])}
    )
    assert assert_round_trip(voc, tmp_path) == 2


def test_round_trip_real_commodity(tmp_path):
    assert assert_round_trip(shared_path("commodity_voc"), tmp_path) == 178


def test_split_export(tmp_path):
    voc = make_voc(
        tmp_path / "voc",
        {"a": (20, 20, [("can", 2, 2, 10, 10)]), "b": (20, 20, [("can", 3, 3, 9, 9)])},
        splits={"test": ["b"]},
    )
    ds = convert_folder(voc, workers=1).dataset
    write_coco(ds, tmp_path / "test.json", split="test")
    coco = load_coco(tmp_path / "test.json")
    assert [i["voc_id"] for i in coco.loadImgs(coco.getImgIds())] == ["b"]
