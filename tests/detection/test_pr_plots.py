"""The evaluation files: valid JSON with NaN as null, a readable table, a real PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from prodet.detection.metrics_coco import coco_results, evaluate_coco
from prodet.detection.metrics_voc import evaluate_voc
from prodet.detection.pr_plots import per_class_table, plot_pr_curves, write_evaluation

CLASSES = ("__background__", "bottle", "can", "box")
A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
C = [40.0, 40.0, 60.0, 60.0]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def evaluation():
    # bottle: TP on A, duplicate FP, TP on C -> VOC area AP 5/6; can: TP on B -> 1;
    # box: no ground truth -> NaN everywhere.
    truth = [
        {"boxes": np.array([A, B, C], np.float32), "labels": np.array([1, 2, 1])},
    ]
    preds = [
        {
            "boxes": np.array([A, A, C, B], np.float32),
            "scores": np.array([0.9, 0.8, 0.7, 0.6], np.float32),
            "labels": np.array([1, 1, 1, 2]),
        }
    ]
    voc = evaluate_voc(truth, preds, CLASSES)
    coco = evaluate_coco(truth, preds, CLASSES)
    return voc, coco, coco_results(preds, CLASSES)


def test_write_evaluation_writes_every_file(tmp_path, evaluation):
    voc, coco, results = evaluation
    paths = write_evaluation(tmp_path / "eval", voc, coco, CLASSES, results)
    assert sorted(p.name for p in paths.values()) == [
        "per_class.md",
        "pr_curves.png",
        "predictions_coco.json",
        "summary.json",
    ]
    summary = json.loads(paths["summary"].read_text())
    assert summary["voc"]["map_area"] == pytest.approx((5 / 6 + 1.0) / 2)
    assert summary["voc"]["classes_without_ground_truth"] == ["box"]
    assert summary["coco"]["APl"] is None  # no object above 96 x 96: NaN written as null
    rows = {row["name"]: row for row in summary["per_class"]}
    assert (rows["bottle"]["tp"], rows["bottle"]["fp"], rows["bottle"]["npos"]) == (2, 1, 2)
    assert rows["box"]["ap_area"] is None and rows["box"]["ap_coco"] is None
    assert json.loads(paths["predictions"].read_text()) == results
    assert paths["pr_curves"].read_bytes().startswith(PNG_SIGNATURE)
    assert not list((tmp_path / "eval").glob(".*.tmp"))  # atomic writes leave no debris


def test_per_class_table_has_a_row_per_class_and_a_mean(evaluation):
    voc, coco, _ = evaluation
    lines = per_class_table(voc, coco).splitlines()
    assert len(lines) == 2 + 3 + 1
    assert lines[2].startswith("| bottle | 2 | 3 | 2 | 1 | 0.8485 | 0.8333 |")
    assert lines[4].startswith("| box | 0 | 0 | 0 | 0 | n/a | n/a | n/a | n/a |")
    assert lines[5].startswith("| **mean** |")


def test_plot_handles_a_single_class_without_detections():
    result = evaluate_voc(
        [{"boxes": np.array([A], np.float32), "labels": np.array([1])}],
        [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}],
        CLASSES[:2],
    )
    assert plot_pr_curves(result).startswith(PNG_SIGNATURE)


def test_mismatched_class_names_are_refused(tmp_path, evaluation):
    voc, coco, results = evaluation
    with pytest.raises(ValueError, match="same class_names"):
        write_evaluation(tmp_path, voc, coco, ("__background__", "bottle", "can"), results)
    assert not list(tmp_path.iterdir())
