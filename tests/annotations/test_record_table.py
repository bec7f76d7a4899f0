"""RecordTable: the dataset's records column by column, read as ImageRecords."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from prodet.annotations.convert import convert_folder
from prodet.annotations.record_table import RecordTable
from prodet.annotations.schema import ImageRecord
from tests.annotations.voc_factory import make_voc


def record(image_id: str, boxes: list[list[float]], labels: list[int]) -> ImageRecord:
    return ImageRecord(
        image_id,
        f"JPEGImages/{image_id}.jpg",
        64,
        48,
        "PNG",
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.zeros(len(labels), bool),
        image_id[0] * 64,
    )


def test_records_read_back_from_the_columns():
    records = (
        record("a", [[1, 2, 3, 4], [5, 6, 7, 8]], [1, 2]),
        record("b", [], []),
        record("c", [[0, 0, 64, 48]], [3]),
    )
    table = RecordTable.from_records(records)
    assert len(table) == 3 and table.offsets.tolist() == [0, 2, 2, 3]
    assert table.boxes.shape == (3, 4) and table.labels.tolist() == [1, 2, 3]
    assert [r.image_id for r in table] == ["a", "b", "c"]
    assert table[2].boxes.tolist() == [[0, 0, 64, 48]] and table[1].num_objects == 0
    assert [r.image_id for r in table[1:]] == ["b", "c"]
    assert type(table[0].width) is int and table[0].image_path == "JPEGImages/a.jpg"
    # Each record's arrays are views of the columns: no copy per record.
    assert np.shares_memory(table[0].boxes, table.boxes)
    assert table[0] is table[0]  # built once
    assert RecordTable.from_records(table) is table


def test_pickle_round_trip_is_equal():
    table = RecordTable.from_records((record("a", [[1, 2, 3, 4]], [1]), record("b", [], [])))
    back = pickle.loads(pickle.dumps(table))
    assert back == table and back.labels.dtype == np.int64
    assert back != RecordTable.from_records((record("a", [[1, 2, 3, 5]], [1]), record("b", [], [])))


def test_an_empty_table():
    table = RecordTable.from_records(())
    assert len(table) == 0 and table.boxes.shape == (0, 4) and list(table) == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (1, ["x"], "image_paths must hold 2 strings"),
        (5, ["0" * 64, 7], "xml_sha256 must hold 2 strings"),
        (2, np.array([64]), r"widths must be int64 \[2\]"),
        (6, np.array([1, 1]), r"boxes must be float32 \[2, 4\]"),
        (7, np.zeros((1, 4), np.float64), r"boxes must be float32 \[1, 4\]"),
        (8, np.array([0]), "label 0 is background"),
        (9, np.array([1], np.uint8), r"difficult must be bool \[1\]"),
    ],
)
def test_bad_columns_are_refused(column, value, message):
    columns = list(
        RecordTable.from_records((record("a", [[1, 2, 3, 4]], [1]), record("b", [], []))).columns()
    )
    columns[column] = value
    with pytest.raises(ValueError, match=message):
        RecordTable(*columns)


def test_records_are_sorted_by_id_when_file_names_sort_otherwise(tmp_path):
    # "a-b.xml" sorts before "a.xml" ('-' < '.'), but the id "a" before "a-b": the builder
    # must reorder the records and their objects together. The 64 empty fillers make
    # workers=2 convert in the process pool (it starts at 64 files), not serially.
    fillers = {f"z{i:02d}": (16, 16, []) for i in range(64)}
    voc = make_voc(
        tmp_path / "voc",
        {
            "a-b": (64, 48, [("can", 1, 1, 10, 10)]),
            "a": (64, 48, [("box", 2, 2, 20, 20), ("can", 3, 3, 30, 30)]),
            "b": (64, 48, []),
            **fillers,
        },
    )
    tables = []
    for workers in (1, 2):
        ds = convert_folder(voc, workers=workers).dataset
        assert [r.image_id for r in ds.records] == ["a", "a-b", "b", *fillers]
        assert [ds.classes[i] for i in ds.records[0].labels] == ["box", "can"]
        assert ds.records[0].boxes[:, 0].tolist() == [1.0, 2.0]
        assert ds.records[1].boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]
        assert ds.records[2].num_objects == 0
        tables.append(ds.records)
    assert tables[0] == tables[1]
