"""``prodet evaluate --onnx``: the exported model's accuracy, measured in onnxruntime."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from prodet.annotations.pickle_store import load_dataset
from prodet.commands import main as prodet
from prodet.detection.checkpoint_eval import evaluate_checkpoint
from tests.export.conftest import HEADS


@pytest.mark.parametrize("head", HEADS)
def test_onnx_evaluation_writes_the_files_with_pytorchs_map(
    exported, checkpoints, tiny_data, tmp_path, capsys, head
):
    out = tmp_path / "onnx-eval"
    code = prodet(
        ["evaluate", "--onnx", str(exported[head].path), "--data", str(tiny_data), "--split",
         "test", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert '"runtime": "onnxruntime' in capsys.readouterr().out
    for name in (
        "summary.json",
        "per_class.md",
        "pr_curves.png",
        "predictions_coco.json",
        "confusion.csv",
        "confusion.png",
    ):
        assert (out / name).is_file(), name
    onnx_summary = json.loads((out / "summary.json").read_text())
    evaluate_checkpoint(checkpoints[head], tiny_data, "test", tmp_path / "torch-eval")
    torch_summary = json.loads((tmp_path / "torch-eval" / "summary.json").read_text())
    assert onnx_summary["voc"]["map_area"] == pytest.approx(
        torch_summary["voc"]["map_area"], abs=1e-3
    )
    assert onnx_summary["coco"]["AP"] == pytest.approx(torch_summary["coco"]["AP"], abs=1e-3)
    detections = [c["detections"] for c in onnx_summary["per_class"]]
    assert sum(detections) > 0


def test_evaluate_needs_exactly_one_model(exported, tiny_data, capsys):
    args = ["evaluate", "--data", str(tiny_data), "--split", "test"]
    assert prodet(args) == 2
    assert prodet([*args, "--onnx", str(exported["ssd"].path), "--checkpoint", "x.pt"]) == 2
    assert "one of --checkpoint or --onnx" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["checkpoint", "onnx"])
def test_predictions_join_the_coco_export_in_pycocotools(
    checkpoints, exported, tiny_data, tmp_path, capsys, model
):
    """``prodet convert --coco`` + ``prodet evaluate``, scored the standard pycocotools way,
    give the AP prodet reports; the test split's images are the dataset's last 28 of 40, so
    numbering them 1..28 in split order would score the train images instead."""
    data, coco_file, out = tmp_path / "d.pkl", tmp_path / "d.json", tmp_path / "eval"
    voc_root = tiny_data.parent
    assert prodet(["convert", str(voc_root), "-o", str(data), "--coco", str(coco_file),
                   "--workers", "1", "--quiet"]) == 0  # fmt: skip
    source = ["--checkpoint", str(checkpoints["ssd"])] if model == "checkpoint" else [
        "--onnx", str(exported["ssd"].path)]  # fmt: skip
    code = prodet(["evaluate", *source, "--data", str(data), "--split", "test", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "confusion.csv, confusion.png" in printed
    summary = json.loads((out / "summary.json").read_text())

    test_ids = (voc_root / "ImageSets" / "Main" / "test.txt").read_text().split()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_file))
        split = sorted(i["id"] for i in gt.dataset["images"] if i["voc_id"] in test_ids)
        assert len(split) == len(test_ids) == 28 and split != list(range(1, 29))
        evaluator = COCOeval(gt, gt.loadRes(str(out / "predictions_coco.json")), "bbox")
        evaluator.params.imgIds = split
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert summary["coco"]["AP"] > 0.0  # a model that finds something, so a mix-up shows
    assert evaluator.stats[0] == pytest.approx(summary["coco"]["AP"], abs=1e-9)
    assert evaluator.stats[1] == pytest.approx(summary["coco"]["AP50"], abs=1e-9)
    assert f'"coco_map@[.5:.95]": {round(evaluator.stats[0], 4)}' in printed

    # Each true class's row counts its objects: matched to some class or missed.
    with (out / "confusion.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ detected", "background", "blue", "red"]  # sorted names
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    records = load_dataset(data).split_records("test")
    objects = np.bincount(np.concatenate([r.labels for r in records]), minlength=3)
    np.testing.assert_array_equal(matrix[1:].sum(axis=1), objects[1:])
    assert matrix[0, 0] == 0 and np.trace(matrix) > 0
