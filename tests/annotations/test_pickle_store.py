"""The pickled dataset: round trip, hash check, atomic writes, and refusal of foreign code."""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from prodet.annotations import atomic, schema
from prodet.annotations.pickle_store import (
    PICKLE_PROTOCOL,
    DatasetFileError,
    UnsafePickleError,
    dataset_bytes,
    dump_dataset,
    load_dataset,
)
from prodet.annotations.record_table import RecordTable
from prodet.annotations.schema import FORMAT_VERSION, ImageRecord, VocDataset, compute_content_hash
from prodet.annotations.voc_folder import VocFolder, fingerprint


def tiny_dataset() -> VocDataset:
    rec = ImageRecord(
        image_id="a",
        image_path="JPEGImages/a.jpg",
        width=64,
        height=48,
        image_format="PNG",
        boxes=np.array([[1, 2, 30, 40]], dtype=np.float32),
        labels=np.array([1], dtype=np.int64),
        difficult=np.array([False]),
        xml_sha256="0" * 64,
    )
    classes = ("__background__", "can")
    splits = {"trainval": ("a",)}
    return VocDataset(
        FORMAT_VERSION,
        "/data",
        classes,
        (rec,),
        splits,
        "fp",
        compute_content_hash(classes, (rec,), splits),
    )


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip(tmp_path):
    ds = tiny_dataset()
    dump_dataset(ds, tmp_path / "d.pkl")
    back = load_dataset(tmp_path / "d.pkl")
    assert back.classes == ds.classes and back.splits == ds.splits
    np.testing.assert_array_equal(back.records[0].boxes, ds.records[0].boxes)
    assert back.records[0].boxes.dtype == np.float32
    assert back.content_hash == ds.content_hash
    assert back.split_records("trainval")[0].image_id == "a"


def test_crafted_pickle_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Exploit(str(marker))))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_dataset(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_exploit_nested_inside_a_dataset_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ds = replace(tiny_dataset(), splits={"trainval": (Exploit(str(marker)),)})
    (tmp_path / "d.pkl").write_bytes(pickle.dumps(ds))
    with pytest.raises(UnsafePickleError, match=r"references (posix|os)\.system"):
        load_dataset(tmp_path / "d.pkl")
    assert not marker.exists()


def test_truncated_and_garbage_files(tmp_path):
    dump_dataset(tiny_dataset(), tmp_path / "d.pkl")
    data = (tmp_path / "d.pkl").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFileError, match="not a readable prodet dataset"):
        load_dataset(tmp_path / "cut.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DatasetFileError, match="not a VocDataset"):
        load_dataset(tmp_path / "list.pkl")


def test_edited_content_fails_the_hash_and_old_versions_are_refused(tmp_path):
    ds = tiny_dataset()
    rec = replace(ds.records[0], width=65)
    (tmp_path / "edit.pkl").write_bytes(pickle.dumps(replace(ds, records=(rec,))))
    with pytest.raises(DatasetFileError, match="content hash mismatch"):
        load_dataset(tmp_path / "edit.pkl")
    (tmp_path / "v0.pkl").write_bytes(pickle.dumps(replace(ds, format_version=0)))
    with pytest.raises(DatasetFileError, match="format version 0"):
        load_dataset(tmp_path / "v0.pkl")


def test_interrupted_write_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "d.pkl"
    dump_dataset(tiny_dataset(), path)
    before = path.read_bytes()

    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        dump_dataset(replace(tiny_dataset(), root="/elsewhere"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pkl"]


def test_record_validation_names_the_image():
    with pytest.raises(ValueError, match="'a': boxes must be float32"):
        replace(tiny_dataset().records[0], boxes=np.zeros((1, 4), dtype=np.float64))


def test_content_hash_and_fingerprint_are_unchanged():
    # Digests computed by the first release; a dataset's hash must not depend on the code.
    records = (
        ImageRecord(
            "a",
            "JPEGImages/a.jpg",
            64,
            48,
            "PNG",
            np.array([[1, 2, 30, 40], [0, 0, 64, 48]], np.float32),
            np.array([1, 2], np.int64),
            np.array([False, True]),
            "0" * 64,
        ),
        ImageRecord(
            "b",
            "JPEGImages/b.png",
            32,
            32,
            "JPEG",
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, bool),
            "f" * 64,
        ),
    )
    splits = {"trainval": ("a",), "test": ("b", "a")}
    classes = ("__background__", "can", "box")
    golden = "5db3be1744fb0fcf9f51f146707f6b1eefa090c55e7e9f63d811d7a0f0b2d3d3"
    assert compute_content_hash(classes, records, splits) == golden
    # A dataset's own table gives the same digest as the records it was built from.
    assert compute_content_hash(classes, RecordTable.from_records(records), splits) == golden
    stats = (("Annotations/a.xml", 10, 123), ("JPEGImages/a.jpg", 99, 456))
    folder = VocFolder(Path("/r"), Path("/r/A"), Path("/r/J"), (), {}, (), stats)
    assert (
        fingerprint(folder, {"b": "2", "a": "1"})
        == "ce60970d6ef304b2bf84076e7aaa4ed3d7d417b23509ba1a1fff96a8a0e27350"
    )


def test_odd_arrays_round_trip_and_the_pickle_holds_no_record_objects(tmp_path):
    rec = tiny_dataset().records[0]
    odd = [
        replace(rec, image_id="view", boxes=np.arange(12, dtype=np.float32).reshape(3, 4)[1:2]),
        replace(rec, image_id="fortran", boxes=np.asfortranarray(np.ones((1, 4), np.float32))),
        replace(
            rec,
            image_id="empty",
            boxes=np.zeros((0, 4), np.float32),
            labels=np.zeros(0, np.int64),
            difficult=np.zeros(0, bool),
        ),
    ]
    records = (rec, *odd)
    ds = replace(tiny_dataset(), records=records)
    ds = replace(ds, content_hash=compute_content_hash(ds.classes, records, ds.splits))
    data = dataset_bytes(ds)
    assert data == pickle.dumps(ds, protocol=PICKLE_PROTOCOL)
    assert b"ImageRecord" not in data and b"RecordTable" in data
    dump_dataset(ds, tmp_path / "d.pkl")
    back = load_dataset(tmp_path / "d.pkl")
    assert back == ds and back.records == RecordTable.from_records(records)
    assert [r.num_objects for r in back.records] == [1, 1, 1, 0]


@pytest.mark.parametrize(
    "record_module",
    [
        "prodet.annotations.image_record",
        # where format-1 files name it: ImageRecord was defined in schema then
        "prodet.annotations.schema",
        "annotations.schema",
    ],
)
def test_format_1_files_are_refused_with_a_convert_hint(tmp_path, monkeypatch, record_module):
    ds = tiny_dataset()
    old = replace(ds, format_version=1)
    object.__setattr__(old, "records", tuple(ds.records))  # format 1: one object per record
    monkeypatch.setitem(sys.modules, "annotations.schema", schema)  # the pre-namespace name
    monkeypatch.setattr(ImageRecord, "__module__", record_module)
    data = pickle.dumps(old, protocol=PICKLE_PROTOCOL)
    assert bytes([len(record_module)]) + record_module.encode() + b"\x94\x8c\x0bImageRecord" in data
    (tmp_path / "v1.pkl").write_bytes(data)
    with pytest.raises(DatasetFileError, match=r"format version 1.*prodet convert"):
        load_dataset(tmp_path / "v1.pkl")


def test_a_crafted_table_with_bad_columns_is_a_dataset_error(tmp_path):
    ds = tiny_dataset()
    columns = list(ds.records.columns())
    columns[8] = np.array([0], np.int64)  # a background label

    class Crafted:
        def __reduce__(self):
            return (RecordTable, tuple(columns))

    state = replace(ds)
    object.__setattr__(state, "records", Crafted())
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(state, protocol=PICKLE_PROTOCOL))
    with pytest.raises(DatasetFileError, match="label 0 is background"):
        load_dataset(tmp_path / "bad.pkl")
