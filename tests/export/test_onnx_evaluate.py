"""``prodet evaluate --onnx``: the exported model's accuracy, measured in onnxruntime."""

from __future__ import annotations

import json

import pytest
from prodet.detection.checkpoint_eval import evaluate_checkpoint

from prodet.commands import main as prodet
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
    for name in ("summary.json", "per_class.md", "pr_curves.png", "predictions_coco.json"):
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
