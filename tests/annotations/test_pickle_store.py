"""The pickled dataset: round trip, hash check, atomic writes, and refusal of foreign code."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace

import numpy as np
import pytest

from annotations import atomic
from annotations.pickle_store import (
    DatasetFileError,
    UnsafePickleError,
    dump_dataset,
    load_dataset,
)
from annotations.schema import FORMAT_VERSION, ImageRecord, VocDataset, compute_content_hash


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
    with pytest.raises(UnsafePickleError):
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
