"""The synthetic shelf dataset: converter round trip, determinism, splits, occlusion."""

from __future__ import annotations

import io

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from prodet.annotations.camera_photo import photo_orientation
from prodet.annotations.convert import convert_folder
from prodet.annotations.image_decode import decode_image
from prodet.annotations.occlusion import (
    DIFFICULT_HIDDEN,
    DROP_HIDDEN,
    Visibility,
    VisibilityMap,
    VocFlags,
    voc_flags,
)
from prodet.annotations.orientation import orient_box, orient_size
from prodet.annotations.synthetic import (
    SHELF_CLASSES,
    TEST_EVERY,
    dataset_scene,
    generate_shelf_dataset,
)
from prodet.commands import main as prodet

SIZE = (224, 192)
BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
IMAGES = 24


def tree_bytes(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def shelf(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "voc"
    summary = generate_shelf_dataset(root, images=IMAGES, size=SIZE, seed=3)
    return root, summary


def test_round_trip_through_converter_gives_the_drawn_boxes(shelf):
    root, summary = shelf
    result = convert_folder(root, workers=1)
    assert result.problems == []
    ds = result.dataset
    assert ds.classes[1:] == tuple(sorted(SHELF_CLASSES))
    assert [r.image_id for r in ds.records] == [f"{i:06d}" for i in range(1, IMAGES + 1)]
    for index, record in enumerate(ds.records):
        scene = dataset_scene(index, seed=3, size=SIZE)
        assert (record.width, record.height, record.image_format) == (*SIZE, "JPEG")
        assert [ds.classes[i] for i in record.labels] == [o.name for o in scene.objects]
        drawn = np.array([o.box for o in scene.objects], np.float32).reshape(-1, 4)
        np.testing.assert_allclose(record.boxes, drawn, atol=1.0)
        assert record.difficult.tolist() == [o.difficult for o in scene.objects]
    counts = dict.fromkeys(SHELF_CLASSES, 0)
    for record in ds.records:
        for label in record.labels:
            counts[ds.classes[label]] += 1
    assert counts == summary.objects_per_class
    assert sum(int(r.difficult.sum()) for r in ds.records) == summary.difficult


def test_every_class_appears(shelf):
    _, summary = shelf
    assert summary.classes == SHELF_CLASSES and len(SHELF_CLASSES) == 6
    assert all(n > 0 for n in summary.objects_per_class.values()), summary.objects_per_class


def test_splits_hold_every_fifth_id_for_test_and_are_disjoint(shelf):
    root, summary = shelf
    main = root / "ImageSets" / "Main"
    test = main.joinpath("test.txt").read_text().split()
    trainval = main.joinpath("trainval.txt").read_text().split()
    ids = [f"{i:06d}" for i in range(1, IMAGES + 1)]
    assert test == ids[TEST_EVERY - 1 :: TEST_EVERY] == ["000005", "000010", "000015", "000020"]
    assert not set(test) & set(trainval) and sorted(test + trainval) == ids
    assert summary.splits == {"trainval": IMAGES - 4, "test": 4}


def test_xml_is_labelimg_style_with_boxes_inside_the_image(shelf):
    root, summary = shelf
    border_cut = 0
    for index, xml in enumerate(sorted((root / "Annotations").glob("*.xml"))):
        tree = etree.parse(str(xml)).getroot()
        assert tree.findtext("folder") == "JPEGImages"
        assert tree.findtext("filename") == xml.stem + ".jpg"
        assert tree.findtext("path") == f"JPEGImages/{xml.stem}.jpg"
        assert tree.findtext("source/database") == "prodet synthetic shelves"
        size = [int(tree.findtext(f"size/{k}")) for k in ("width", "height", "depth")]
        assert size == [*SIZE, 3] and tree.findtext("segmented") == "0"
        with Image.open(root / "JPEGImages" / f"{xml.stem}.jpg") as image:
            assert image.size == SIZE and image.mode == "RGB"
        objects = list(tree.iter("object"))
        scene = dataset_scene(index, seed=3, size=SIZE)
        assert [o.findtext("truncated") == "1" for o in objects] == [
            o.truncated for o in scene.objects
        ]
        for obj in objects:
            assert obj.findtext("pose") == "Unspecified"
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{k}")) for k in BOX_TAGS)
            assert 1 <= xmin <= xmax <= SIZE[0] and 1 <= ymin <= ymax <= SIZE[1]
            at_border = xmin == 1 or ymin == 1 or xmax == SIZE[0] or ymax == SIZE[1]
            border_cut += at_border and obj.findtext("truncated") == "1"
    assert 0 < border_cut <= summary.truncated


def test_occluded_objects_are_difficult_and_hidden_ones_dropped(shelf):
    _, summary = shelf
    scenes = [dataset_scene(i, seed=3, size=SIZE) for i in range(IMAGES)]
    objects = [o for s in scenes for o in s.objects]
    assert all(o.hidden <= DROP_HIDDEN for o in objects)
    assert all(o.difficult == (o.hidden > DIFFICULT_HIDDEN) for o in objects)
    assert summary.difficult > 0 and summary.dropped == sum(s.dropped for s in scenes) > 0
    assert any(o.hidden > 0.2 and not o.difficult for o in objects)  # partly occluded, kept


def test_visibility_map_measures_what_is_left():
    vis = VisibilityMap(100, 60)
    box = np.ones((40, 20), bool)
    back = vis.add(box, 10, 10)
    front = vis.add(box, 16, 10)  # hides 14 of the back box's 20 columns
    cut = vis.add(box, 90, 30)  # half of it is right of the image, 10 rows below it
    vis.occlude(np.ones((5, 100), bool), 0, 55)  # a strip over the bottom of `cut`
    assert vis.visibility(back) == Visibility((10.0, 10.0, 16.0, 50.0), 0.7, False, 0.7)
    assert vis.visibility(front) == Visibility((16.0, 10.0, 36.0, 50.0), 0.0, False, 0.0)
    left = vis.visibility(cut)
    assert left.box == (90.0, 30.0, 100.0, 55.0) and left.cut_by_border
    assert left.hidden == pytest.approx(1 - 10 * 25 / 800)
    assert voc_flags(vis.visibility(back)).difficult  # 70% hidden > 60%
    assert voc_flags(vis.visibility(back)).truncated  # 70% of it outside its box
    assert voc_flags(vis.visibility(front)) == VocFlags(truncated=False, difficult=False)
    assert voc_flags(left).truncated and voc_flags(left).difficult
    vis.occlude(np.ones((60, 100), bool))
    assert vis.visibility(front).box is None and voc_flags(vis.visibility(front)) is None
    assert voc_flags(Visibility((0.0, 0.0, 50.0, 50.0), 0.95, False, 0.0)) is None
    assert voc_flags(Visibility((0.0, 0.0, 3.0, 50.0), 0.1, False, 0.0)) is None


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = generate_shelf_dataset(tmp_path / "a", images=6, size=(128, 96), seed=11)
    b = generate_shelf_dataset(tmp_path / "b", images=6, size=(128, 96), seed=11)
    generate_shelf_dataset(tmp_path / "c", images=6, size=(128, 96), seed=12)
    files_a, files_b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert len(files_a) == 6 + 6 + 2 and files_a == files_b
    assert a.objects_per_class == b.objects_per_class
    files_c = tree_bytes(tmp_path / "c")
    images = [k for k in files_a if k.startswith("JPEGImages/")]
    assert all(files_a[k] != files_c[k] for k in images)


def test_refuses_to_mix_with_an_existing_dataset(tmp_path):
    generate_shelf_dataset(tmp_path, images=7, size=(64, 64))
    with pytest.raises(ValueError, match="already holds a VOC dataset"):
        generate_shelf_dataset(tmp_path, images=2, size=(64, 64))
    generate_shelf_dataset(tmp_path, images=2, size=(64, 64), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "Annotations").iterdir()) == [
        "000001.xml",
        "000002.xml",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": 0}, "images must be at least 1"),
        ({"size": (32, 320)}, "between 64 and 4096"),
        ({"seed": -1}, "seed must be a non-negative"),
        ({"quality": 0}, "JPEG quality must be in 1..95"),
        ({"exif_rotated": 1.5}, r"share of EXIF-rotated images must be in \[0, 1\]"),
    ],
)
def test_bad_arguments_are_value_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_shelf_dataset(tmp_path, **kwargs)


def test_prodet_synth_command(tmp_path, capsys):
    out = tmp_path / "voc"
    args = ["synth", str(out), "--images", "6", "--size", "96x64", "--seed", "1", "--quiet"]
    assert prodet(args) == 0
    assert "wrote 6 images" in capsys.readouterr().out
    with Image.open(out / "JPEGImages" / "000006.jpg") as image:
        assert image.size == (96, 64)
    assert prodet(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert prodet([*args, "--overwrite"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        prodet(["synth", str(out), "--size", "wide"])
    assert exit_info.value.code == 2
    assert "expected WIDTHxHEIGHT such as 320x320, got 'wide'" in capsys.readouterr().err


def test_phone_photos_are_stored_turned_with_their_boxes_in_the_stored_layout(tmp_path):
    """--exif-rotated: the upright scene is drawn at HxW, stored turned at WxH with the tag;
    the converter reads boxes on the stored pixels, the service's upright view shows the
    drawn scene with the drawn boxes."""
    root = tmp_path / "voc"
    args = ["synth", str(root), "--images", "4", "--size", "160x120", "--seed", "5"]
    assert prodet([*args, "--exif-rotated", "0.5", "--quality", "85", "--quiet"]) == 0
    orientations = [photo_orientation(i, 0.5) for i in range(4)]
    assert orientations == [1, 6, 1, 8]
    dataset = convert_folder(root, workers=1).dataset
    for index, record in enumerate(dataset.records):
        orientation = orientations[index]
        data = (root / record.image_path).read_bytes()
        assert (record.width, record.height) == (160, 120)  # the stored layout
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (160, 120)
            assert image.getexif().get(0x0112, 1) == orientation
        drawn = dataset_scene(index, seed=5, size=orient_size((160, 120), orientation))
        shown = decode_image(data, exif_orientation=True)
        assert shown.size == drawn.image.size
        drawn_pixels = np.asarray(drawn.image, int)
        difference = np.abs(shown.pixels.astype(int) - drawn_pixels).mean()
        turned = np.abs(shown.pixels.astype(int) - drawn_pixels[::-1, ::-1]).mean()
        assert difference < 12 and difference < turned / 3  # the same picture, up to JPEG loss
        upright_boxes = [orient_box(tuple(b), (160, 120), orientation) for b in record.boxes]
        expected = [o.box for o in drawn.objects]
        np.testing.assert_allclose(upright_boxes, expected, atol=1.0)


def test_photo_orientations_are_spread_evenly():
    chosen = [photo_orientation(i, 0.3) for i in range(20)]
    assert chosen.count(6) + chosen.count(8) == 6 and abs(chosen.count(6) - chosen.count(8)) <= 1
    assert [photo_orientation(i, 0.0) for i in range(5)] == [1] * 5
    assert [photo_orientation(i, 1.0) for i in range(4)] == [6, 8, 6, 8]
