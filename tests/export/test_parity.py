"""The parity gate: its matching rule by hand, and failing loudly on a broken graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.checkpoint_eval import model_from_checkpoint
from prodet.export import pipeline
from prodet.export.cli import export_main
from prodet.export.onnx_contract import Detections
from prodet.export.ort_runner import open_session
from prodet.export.parity import ParityError, check_parity, compare_detections, raise_on_failure
from tests.export.images import split_images

BOXES = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 60, 30]], dtype=np.float32)
REFERENCE = Detections(BOXES, np.array([0.9, 0.5, 0.2], np.float32), np.array([1, 2, 1]))
# Initialisers of each head's class scores, perturbed to break an export on purpose.
SCORE_WEIGHTS = {"ssd": "classification_head", "fast_rcnn": "cls_score"}


def _candidate(boxes=BOXES, scores=(0.9, 0.5, 0.2), labels=(1, 2, 1)) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(labels)
    )


def test_identical_and_reordered_detections_pass():
    same = compare_detections("a", REFERENCE, _candidate())
    assert same.problem is None and same.matched == 3 and same.min_iou == 1.0
    order = [2, 0, 1]
    shuffled = _candidate(
        BOXES[order], np.array([0.9, 0.5, 0.2])[order], np.array([1, 2, 1])[order]
    )
    assert compare_detections("a", REFERENCE, shuffled).problem is None


def test_one_detection_more_or_less_passes_but_two_fail():
    assert (
        compare_detections("a", REFERENCE, _candidate(BOXES[:2], (0.9, 0.5), (1, 2))).problem
        is None
    )
    fewer = compare_detections("a", REFERENCE, _candidate(BOXES[:1], (0.9,), (1,)))
    assert "3 PyTorch vs 1 ONNX detections" in fewer.problem


def test_a_moved_box_a_changed_score_or_a_changed_label_fail():
    moved = BOXES.copy()
    moved[1] += 0.1  # IoU 19.9^2 / (800 - 19.9^2) = 0.980
    problem = compare_detections("img7", REFERENCE, _candidate(moved)).problem
    assert "1 matched pairs differ" in problem and "IoU 0.9802" in problem
    problem = compare_detections("img7", REFERENCE, _candidate(scores=(0.9, 0.502, 0.2))).problem
    assert "score 0.5000 vs 0.5020" in problem
    relabelled = compare_detections("a", REFERENCE, _candidate(labels=(2, 1, 2)))
    assert "have no counterpart" in relabelled.problem
    within = compare_detections("a", REFERENCE, _candidate(scores=(0.9, 0.5005, 0.2)))
    assert within.problem is None and within.max_score_diff == pytest.approx(5e-4, rel=1e-3)


def _broken(graph: onnx.ModelProto, head: str) -> onnx.ModelProto:
    broken = onnx.ModelProto()
    broken.CopyFrom(graph)
    hits = [t for t in broken.graph.initializer if SCORE_WEIGHTS[head] in t.name]
    assert hits, [t.name for t in broken.graph.initializer][:20]
    for tensor in hits:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.5, tensor.name))
    return broken


@pytest.mark.parametrize("head", ["ssd", "fast_rcnn"])
def test_the_gate_fails_on_a_graph_with_changed_weights_and_names_the_image(
    exported, checkpoints, tiny_data, head
):
    checkpoint = load_checkpoint(checkpoints[head])
    model = model_from_checkpoint(checkpoint)[0]
    images, ids = split_images(tiny_data, "test", checkpoint["input"], 16)
    broken = _broken(onnx.load(str(exported[head].path)), head)
    report = check_parity(model, open_session(broken.SerializeToString(), threads=1), images, ids)
    assert not report.passed
    with pytest.raises(
        ParityError,
        match=rf"parity gate failed: 16 images.*\n  {report.failures[0].image_id} \(batch 1\): ",
    ):
        raise_on_failure(report)


def test_the_cli_exits_1_and_keeps_the_rejected_graph(checkpoints, tmp_path, monkeypatch, capsys):
    trace = pipeline.trace_to_onnx
    monkeypatch.setattr(pipeline, "trace_to_onnx", lambda *a, **k: _broken(trace(*a, **k), "ssd"))
    out = tmp_path / "model.onnx"
    assert export_main([str(checkpoints["ssd"]), "-o", str(out), "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "parity gate failed" in err and "(batch 1):" in err and "score" in err
    assert not out.exists() and (tmp_path / "model.rejected.onnx").is_file()


def test_the_cli_refuses_bad_options(checkpoints, tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    assert export_main([str(checkpoints["ssd"]), "-o", out, "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert export_main([str(checkpoints["ssd"]), "-o", out, "--parity-images", "4"]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert export_main([str(tmp_path / "missing.pt"), "-o", out]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
