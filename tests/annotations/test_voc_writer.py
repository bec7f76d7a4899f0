"""Writing VOC XML: integer boxes that read back within a pixel, and split lists."""

from __future__ import annotations

import numpy as np
import pytest

from prodet.annotations.voc_folder import read_splits
from prodet.annotations.voc_writer import VocObject, annotation_xml, voc_box, write_image_sets
from prodet.annotations.voc_xml import parse_voc_xml
from tests.annotations.voc_factory import clean_arrays


def test_voc_box_is_one_based_inclusive():
    assert voc_box((0.0, 0.0, 64.0, 48.0), 64, 48) == (1, 1, 64, 48)
    assert voc_box((10.0, 20.0, 50.0, 40.0), 64, 48) == (11, 21, 50, 40)
    assert voc_box((10.4, 20.6, 50.6, 40.4), 64, 48) == (11, 22, 51, 40)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((-1.0, 0.0, 10.0, 10.0), "inside the 64x48 image"),
        ((0.0, 0.0, 65.0, 10.0), "inside the 64x48 image"),
        ((20.0, 0.0, 10.0, 10.0), "non-empty"),
        ((10.6, 0.0, 10.9, 10.0), "narrower than one pixel"),
    ],
)
def test_voc_box_refuses_boxes_it_cannot_write(box, message):
    with pytest.raises(ValueError, match=message):
        voc_box(box, 64, 48)


def test_written_boxes_read_back_within_a_pixel():
    rng = np.random.default_rng(0)
    width, height = 200, 120
    corners = rng.uniform(0, 1, (50, 4)) * [width, height, width, height]
    boxes = np.concatenate(
        [np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])],
        axis=1,
    )
    boxes[:, 2:] += 1.5  # at least a pixel and a half wide and high
    boxes[:, 2:] = np.minimum(boxes[:, 2:], [width, height])
    objects = [
        VocObject(f"c{i % 3}", tuple(map(float, b)), truncated=i % 2 == 0, difficult=i % 5 == 0)
        for i, b in enumerate(boxes)
    ]
    data = annotation_xml(filename="x.jpg", width=width, height=height, objects=objects)
    raw = parse_voc_xml(data, "x.xml")
    assert (raw.filename, raw.width, raw.height, raw.issues) == ("x.jpg", width, height, ())
    assert [o.truncated for o in raw.objects] == [o.truncated for o in objects]
    assert all(o.pose == "Unspecified" for o in raw.objects)
    clean, problems = clean_arrays(raw.objects, width, height, "x.xml", "fail")
    assert problems == []
    assert clean.names == tuple(o.name for o in objects)
    assert clean.difficult.tolist() == [o.difficult for o in objects]
    assert np.abs(clean.boxes - boxes).max() <= 0.5 + 1e-4


def test_labelimg_layout():
    data = annotation_xml(
        filename="a.jpg",
        width=4,
        height=3,
        objects=[VocObject("can", (0.0, 1.0, 2.0, 3.0), truncated=True)],
        database="db",
    )
    assert data.decode() == (
        "<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>a.jpg</filename>\n"
        "\t<path>JPEGImages/a.jpg</path>\n\t<source>\n\t\t<database>db</database>\n"
        "\t</source>\n\t<size>\n\t\t<width>4</width>\n\t\t<height>3</height>\n"
        "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n\t<object>\n"
        "\t\t<name>can</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>1</truncated>\n"
        "\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>1</xmin>\n"
        "\t\t\t<ymin>2</ymin>\n\t\t\t<xmax>2</xmax>\n\t\t\t<ymax>3</ymax>\n\t\t</bndbox>\n"
        "\t</object>\n</annotation>\n"
    )


def test_annotation_errors_name_the_object():
    with pytest.raises(ValueError, match=r"a.jpg: object 1 \('can'\): box"):
        annotation_xml(
            filename="a.jpg",
            width=10,
            height=10,
            objects=[VocObject("can", (0, 0, 5, 5)), VocObject("can", (0, 0, 11, 5))],
        )
    with pytest.raises(ValueError, match="object 0 has an empty class name"):
        annotation_xml(
            filename="a.jpg", width=10, height=10, objects=[VocObject(" ", (0, 0, 5, 5))]
        )
    with pytest.raises(ValueError, match="image size must be positive"):
        annotation_xml(filename="a.jpg", width=0, height=10, objects=[])


def test_image_sets_read_back(tmp_path):
    write_image_sets(tmp_path, {"trainval": ["a", "b"], "test": ["c"]})
    assert (tmp_path / "ImageSets/Main/test.txt").read_text() == "c\n"
    files = tuple(sorted((tmp_path / "ImageSets/Main").glob("*.txt")))
    assert read_splits(files) == {"test": ("c",), "trainval": ("a", "b")}
    with pytest.raises(ValueError, match="plain file stem"):
        write_image_sets(tmp_path, {"../x": ["a"]})
    with pytest.raises(ValueError, match="without spaces"):
        write_image_sets(tmp_path, {"x": ["a b"]})
