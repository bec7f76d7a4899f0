"""Folder conversion on synthetic folders and on the shared real datasets."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from prodet.annotations.convert import ConvertOptions, convert_batch, convert_folder, convert_one
from prodet.annotations.pickle_store import dataset_bytes, dump_dataset
from prodet.annotations.voc_folder import VocFolderError, discover, fingerprint, with_file_stats
from tests.annotations.voc_factory import make_voc
from tests.conftest import shared_path


def kinds(result) -> list[tuple[str, str, int | None]]:
    return sorted((p.kind, p.file, p.object_index) for p in result.problems)


@pytest.fixture
def voc(tmp_path):
    return make_voc(
        tmp_path / "voc",
        {
            "a": (64, 48, [("can", 11, 21, 50, 40), ("box", 1, 1, 64, 48, 1)]),
            "b": (32, 32, []),
            "c": (40, 30, [("can", 30, 20, 10, 25)]),
        },
        splits={"trainval": ["a", "b"], "test": ["c", "zzz"]},
    )


def test_records_classes_splits(voc):
    result = convert_folder(voc, workers=1)
    ds = result.dataset
    assert ds.classes == ("__background__", "box", "can")
    assert [r.image_id for r in ds.records] == ["a", "b", "c"]
    a = ds.records[0]
    assert (a.width, a.height, a.image_format, a.image_path) == (64, 48, "PNG", "JPEGImages/a.jpg")
    np.testing.assert_array_equal(a.boxes, [[10, 20, 50, 40], [0, 0, 64, 48]])
    assert a.labels.tolist() == [2, 1] and a.difficult.tolist() == [False, True]
    assert ds.records[1].num_objects == 0  # kept as a negative image
    np.testing.assert_array_equal(ds.records[2].boxes, [[9, 19, 30, 25]])  # repaired
    assert ds.splits == {"trainval": ("a", "b"), "test": ("c",)}
    assert result.summary.negatives == 1 and result.summary.difficult == 1
    assert result.summary.objects_per_class == {"box": 1, "can": 2}
    assert kinds(result) == [
        ("inverted_box", "c.xml", 0),
        ("unknown_split_id", "ImageSets/Main/test.txt", None),
    ]


def test_parallel_equals_serial(voc):
    for i in range(70):  # enough files to use the process pool
        shutil.copy(voc / "Annotations" / "a.xml", voc / "Annotations" / f"x{i:02d}.xml")
        os.link(voc / "JPEGImages" / "a.jpg", voc / "JPEGImages" / f"x{i:02d}.jpg")
    serial = convert_folder(voc, workers=1).dataset
    parallel = convert_folder(voc, workers=2).dataset
    assert len(serial.records) == 73
    assert serial.content_hash == parallel.content_hash
    # the written file does not depend on the number of workers either
    assert dataset_bytes(serial) == dataset_bytes(parallel)
    assert all(r.boxes.flags.writeable for r in parallel.records)


def test_convert_one_and_convert_batch(voc):
    folder = discover(voc)
    one = convert_one(voc / "Annotations" / "c.xml", folder, ConvertOptions())
    assert (one.image_id, one.image_path, one.width, one.height) == (
        "c",
        "JPEGImages/c.jpg",
        40,
        30,
    )
    assert one.boxes.dtype == np.float32 and one.boxes.tolist() == [[9, 19, 30, 25]]
    assert one.names == ("can",) and one.difficult.tolist() == [False]
    assert [p.kind for p in one.problems] == ["inverted_box"]
    (voc / "JPEGImages" / "b.jpg").unlink()
    folder = discover(voc)
    batch = convert_batch(folder.xml_files, folder, ConvertOptions(on_error="skip"))
    assert batch.image_ids == ["a", "b", "c"] and batch.image_paths[1] is None
    assert batch.object_counts == [2, 0, 0] and batch.names == ["can", "box"]
    boxes = np.frombuffer(batch.boxes, dtype=np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(boxes, [[10, 20, 50, 40], [0, 0, 64, 48]])
    assert batch.difficult == b"\x00\x01"
    assert [(p.kind, p.file) for p in batch.problems] == [
        ("missing_image", "b.xml"),
        ("inverted_box", "c.xml"),
    ]


def test_fail_mode_writes_nothing_and_skip_drops(voc):
    failed = convert_folder(voc, options=ConvertOptions(on_error="fail"), workers=1)
    assert failed.failed and failed.summary.problems_by_kind["inverted_box"] == 1
    skipped = convert_folder(voc, options=ConvertOptions(on_error="skip"), workers=1).dataset
    assert skipped.records[2].num_objects == 0


def test_fixed_class_list_and_unknown_classes(voc):
    options = ConvertOptions(on_error="skip", classes=("can", "bottle"))
    result = convert_folder(voc, options=options, workers=1)
    assert result.dataset.classes == ("__background__", "can", "bottle")
    assert result.dataset.records[0].labels.tolist() == [1]
    assert ("unknown_class", "a.xml", 1) in kinds(result)
    assert convert_folder(voc, options=ConvertOptions("fail", ("can",)), workers=1).failed


def test_missing_corrupt_and_non_voc_files_are_reported(voc):
    (voc / "JPEGImages" / "b.jpg").unlink()
    (voc / "JPEGImages" / "c.jpg").write_bytes(b"not an image")
    (voc / "Annotations" / "d.xml").write_text("<annotations><version>1.1</version></annotations>")
    result = convert_folder(voc, workers=1)
    assert [r.image_id for r in result.dataset.records] == ["a"]
    found = {(k, f) for k, f, _ in kinds(result)}
    assert {
        ("missing_image", "b.xml"),
        ("unreadable_image", "c.xml"),
        ("unreadable_xml", "d.xml"),
    } <= found
    message = next(p.message for p in result.problems if p.kind == "unreadable_xml")
    assert message.startswith("d.xml: not Pascal VOC")


def test_size_mismatch_uses_the_real_image(voc):
    xml = voc / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<width>64</width>", "<width>0</width>"))
    Image.new("RGBA", (64, 48)).save(voc / "JPEGImages" / "a.jpg", format="PNG")
    result = convert_folder(voc, workers=1)
    assert result.dataset.records[0].width == 64
    problem = next(p for p in result.problems if p.kind == "size_mismatch")
    assert "0x48" in problem.message and "64x48" in problem.message


def test_unchanged_folder_is_reused_and_a_change_is_seen(voc, tmp_path):
    out = tmp_path / "d.pkl"
    first = convert_folder(voc, workers=1, previous_output=out)
    dump_dataset(first.dataset, out)
    again = convert_folder(voc, workers=1, previous_output=out)
    assert again.summary.reused and again.dataset.content_hash == first.dataset.content_hash
    other_mode = convert_folder(voc, options=ConvertOptions("skip"), workers=1, previous_output=out)
    assert not other_mode.summary.reused
    xml = voc / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<xmin>11</xmin>", "<xmin>12</xmin>"))
    changed = convert_folder(voc, workers=1, previous_output=out)
    assert not changed.summary.reused
    assert changed.dataset.records[0].boxes[0, 0] == 11


def test_flat_labelimg_folder(tmp_path):
    voc = make_voc(tmp_path / "voc", {"a": (20, 20, [("can", 2, 2, 10, 10)])})
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(voc / "Annotations" / "a.xml", flat)
    shutil.copy(voc / "JPEGImages" / "a.jpg", flat)
    ds = convert_folder(flat, workers=1).dataset
    assert ds.records[0].image_path == "a.jpg"


def test_not_a_voc_folder(tmp_path):
    with pytest.raises(VocFolderError, match=r"no \.xml annotations"):
        convert_folder(tmp_path, workers=1)
    with pytest.raises(VocFolderError, match="no such folder"):
        convert_folder(tmp_path / "nope", workers=1)


@pytest.mark.parametrize(
    ("name", "images", "objects", "classes", "splits", "formats"),
    [
        ("commodity_voc", 88, 178, 8, {"trainval": 71, "test": 17}, {"PNG"}),
        ("groceries25_voc", 500, 1162, 25, {"trainval": 400, "test": 100}, {"PNG"}),
        ("raccoon_voc", 200, 217, 1, {"trainval": 160, "test": 40}, {"JPEG"}),
    ],
)
def test_shared_real_datasets(name, images, objects, classes, splits, formats):
    result = convert_folder(shared_path(name), workers=2)
    ds = result.dataset
    assert (len(ds.records), result.summary.objects, len(ds.classes) - 1) == (
        images,
        objects,
        classes,
    )
    assert result.summary.splits == splits
    assert {r.image_format for r in ds.records} == formats
    for r in ds.records:
        assert (r.boxes[:, 2:] <= [r.width, r.height]).all() and (r.boxes[:, :2] >= 0).all()
        assert (r.boxes[:, 2:] > r.boxes[:, :2]).all()


def test_fingerprint_from_the_workers_stats_equals_discover(voc, tmp_path):
    # Without a previous output the annotation and image files are not stat-ed up front:
    # the workers report what they opened. The fingerprint must be the one a reuse check
    # computes, for images never opened (no annotation names them) and for names whose
    # target is not a file (a dangling link, a link to a folder) too.
    images = voc / "JPEGImages"
    (images / "unused.png").write_bytes((images / "a.jpg").read_bytes())
    (images / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "folder.jpg").mkdir()
    (images / "linked.jpg").symlink_to(tmp_path / "folder.jpg")
    out = tmp_path / "d.pkl"
    first = convert_folder(voc, workers=1, previous_output=out)
    options = {"a": "1"}
    deferred = discover(voc, stat_files=False)
    assert deferred.stats_deferred and len(deferred.stats) == 2  # the split files only
    assert {"JPEGImages/dangling.jpg", "JPEGImages/linked.jpg"} <= set(deferred.image_names)
    with pytest.raises(ValueError, match="annotation and image files' stats"):
        fingerprint(deferred, options)
    batch = convert_batch(deferred.xml_files, deferred, ConvertOptions())
    assert "JPEGImages/unused.png" not in batch.image_stats
    complete = with_file_stats(deferred, batch.xml_stats, batch.image_stats)
    assert complete.stats == discover(voc).stats
    assert "JPEGImages/linked.jpg" not in {name for name, _, _ in complete.stats}
    assert fingerprint(complete, options) == fingerprint(discover(voc), options)
    with pytest.raises(ValueError, match="each of the 3 annotation files"):
        with_file_stats(deferred, batch.xml_stats[:2], batch.image_stats)
    dump_dataset(first.dataset, out)
    assert convert_folder(voc, workers=2, previous_output=out).summary.reused


def test_an_image_name_whose_target_is_not_a_file_does_not_count(tmp_path):
    # b's own image is a link to nothing, and c.jpg a link to a folder: as if absent, so b
    # falls back to the image its <filename> names, and c's annotation has no image.
    voc = make_voc(
        tmp_path / "voc",
        {"a": (64, 48, [("can", 1, 1, 10, 10)]), "c": (64, 48, [("can", 1, 1, 10, 10)])},
    )
    images = voc / "JPEGImages"
    xml = (voc / "Annotations" / "a.xml").read_text()
    (voc / "Annotations" / "b.xml").write_text(xml)  # <filename> is a's image
    (images / "b.jpg").symlink_to(tmp_path / "nowhere.jpg")
    [c_image] = images.glob("c.*")
    c_image.unlink()
    (tmp_path / "folder.jpg").mkdir()
    (images / "c.jpg").symlink_to(tmp_path / "folder.jpg")
    for stat_files in (True, False):
        folder = discover(voc, stat_files=stat_files)
        batch = convert_batch(folder.xml_files, folder, ConvertOptions())
        assert batch.image_ids == ["a", "b", "c"]
        assert batch.image_paths[1] == batch.image_paths[0]
        assert batch.image_paths[2] is None
        assert [p.kind for p in batch.problems] == ["missing_image"]


def test_annotation_larger_than_one_read(tmp_path):
    objects = [("can", 1 + i % 50, 1, 10 + i % 50, 10) for i in range(1500)]
    voc = make_voc(tmp_path / "voc", {"big": (64, 48, objects)})
    assert (voc / "Annotations" / "big.xml").stat().st_size > 1 << 16
    ds = convert_folder(voc, workers=1).dataset
    assert ds.records[0].num_objects == 1500
