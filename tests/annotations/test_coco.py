"""COCO export: pycocotools loads it and boxes round-trip to the VOC integers."""

from __future__ import annotations

import contextlib
import io

import pytest
from pycocotools.coco import COCO

from prodet.annotations.boxes import xyxy_to_voc
from prodet.annotations.coco import coco_ground_truth, coco_image_ids, write_coco
from prodet.annotations.convert import convert_folder
from prodet.annotations.voc_xml import parse_voc_xml
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
    write_coco(ds, tmp_path / "all.json")
    coco, whole = load_coco(tmp_path / "test.json"), load_coco(tmp_path / "all.json")
    assert [i["voc_id"] for i in coco.loadImgs(coco.getImgIds())] == ["b"]
    # An image keeps its id (its position in the dataset) in the split's file and the whole's.
    assert coco.getImgIds() == coco_image_ids(ds, ["b"]) == [2]
    assert whole.loadImgs(2)[0]["voc_id"] == "b"


def test_difficult_boxes_are_crowd_boxes_for_cocoeval():
    coco = coco_ground_truth(
        [{"boxes": [[0, 0, 10, 10], [5, 5, 9, 8]], "labels": [1, 2], "difficult": [False, True]}],
        ("__background__", "can", "box"),
    )
    assert [(a["iscrowd"], a["difficult"]) for a in coco["annotations"]] == [(0, False), (1, True)]
    assert coco["annotations"][1]["bbox"] == [5.0, 5.0, 4.0, 3.0]
    assert coco["annotations"][1]["area"] == 12.0
    assert coco["images"] == [{"id": 1}]
    assert coco["categories"] == [{"id": 1, "name": "can"}, {"id": 2, "name": "box"}]


def test_builder_refuses_mismatched_images_and_arrays():
    classes = ("__background__", "can")
    one = {"boxes": [[0, 0, 10, 10]], "labels": [1]}
    with pytest.raises(ValueError, match="one image entry per"):
        coco_ground_truth([one], classes, images=[{"id": 1}, {"id": 2}])
    with pytest.raises(ValueError, match="repeat"):
        coco_ground_truth([one, one], classes, images=[{"id": 5}, {"id": 5}])
    with pytest.raises(ValueError, match="one of each per object"):
        coco_ground_truth([{"boxes": [[0, 0, 1, 1], [0, 0, 2, 2]], "labels": [1]}], classes)


def test_unknown_record_ids_are_refused(tmp_path):
    voc = make_voc(tmp_path / "voc", {"a": (20, 20, [("can", 2, 2, 10, 10)])})
    with pytest.raises(ValueError, match="not in the dataset"):
        coco_image_ids(convert_folder(voc, workers=1).dataset, ["a", "zz"])
