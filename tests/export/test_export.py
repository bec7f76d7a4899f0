"""Both heads exported from trained checkpoints: the graph, its metadata, batch sizes, empty
and crowded images, and agreement with the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.checkpoint_eval import model_from_checkpoint
from prodet.detection.config import load_config
from prodet.detection.roi_pooler import RoIPooler
from prodet.detection.trainer import fit
from prodet.export import onnx_export
from prodet.export.onnx_contract import Detections
from prodet.export.onnx_export import export_module, trace_to_onnx
from prodet.export.ort_runner import open_session, run_batches
from prodet.export.parity import check_parity, compare_detections, torch_detections
from prodet.export.pipeline import ExportOptions, export_checkpoint
from tests.detection.test_trainer import tiny_overrides
from tests.export.conftest import EPOCHS, HEADS
from tests.export.images import blank, crowd, normalise, split_images

REQUIRED_METADATA = {
    "prodet_format", "classes", "input_size", "mean", "std", "resize_mode", "box_format",
    "head", "backbone", "dataset_hash", "val_map", "exporter", "opset", "exported_at",
    "detections_per_img", "score_thresh", "precision",
}  # fmt: skip


def _load(checkpoints: dict[str, Path], head: str) -> tuple[nn.Module, dict]:
    checkpoint = load_checkpoint(checkpoints[head])
    return model_from_checkpoint(checkpoint)[0], checkpoint


def test_the_exporter_is_the_torchscript_tracer_with_opset_17(monkeypatch):
    captured = {}

    def fake_export(*args, **kwargs):
        captured.update(kwargs)
        raise RuntimeError("stop after recording the arguments")

    monkeypatch.setattr(torch.onnx, "export", fake_export)
    with pytest.raises(RuntimeError, match="stop"):
        trace_to_onnx(nn.Identity(), torch.zeros(1, 3, 8, 8), dynamic_batch=True)
    assert captured["dynamo"] is False and captured["opset_version"] == 17
    assert captured["dynamic_axes"]["images"] == {0: "batch"}
    assert onnx_export.USE_DYNAMO is False and "dynamo=False" in onnx_export.EXPORTER


@pytest.mark.parametrize("head", HEADS)
def test_graph_passes_the_checker_and_carries_the_contract(exported, checkpoints, head):
    result = exported[head]
    graph = onnx.load(str(result.path))
    onnx.checker.check_model(graph, full_check=True)
    props = {p.key: p.value for p in graph.metadata_props}
    assert set(props) >= REQUIRED_METADATA
    checkpoint = load_checkpoint(checkpoints[head])
    assert json.loads(props["classes"]) == ["__background__", "blue", "red"]
    assert int(props["input_size"]) == checkpoint["input"]["size"]
    assert json.loads(props["mean"]) == pytest.approx(checkpoint["input"]["mean"])
    assert (props["head"], props["backbone"]) == (head, "efficientnet_lite0")
    assert props["dataset_hash"] == checkpoint["dataset_hash"]
    assert float(props["val_map"]) == pytest.approx(checkpoint["history"][-1]["val_map_area"])
    assert (props["opset"], props["precision"], props["detections_per_img"]) == (
        "17",
        "fp32",
        "100",
    )
    ops = {node.op_type for node in graph.graph.node}
    assert "NonMaxSuppression" in ops
    assert ("MaxRoiPool" in ops) == (head == "fast_rcnn")
    assert not ops & {"Split", "ReduceMax", "Loop", "If", "SequenceConstruct"}
    size = checkpoint["input"]["size"]
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, size, size]
    assert [o.name for o in graph.graph.output] == ["boxes", "scores", "labels", "num_detections"]


@pytest.mark.parametrize("head", HEADS)
def test_the_gate_ran_on_16_validation_images_at_batch_1_and_8(exported, tiny_data, head):
    report = exported[head].parity
    assert report.passed
    assert sorted({i.batch_size for i in report.images}) == [1, 8]
    ids = {i.image_id for i in report.images}
    assert len(ids) == 16 and all(int(i) >= 12 for i in ids)  # the test split: ids 012..039
    assert sum(i.reference_count for i in report.images) > 0


@pytest.mark.parametrize("head", HEADS)
def test_batches_of_1_2_and_8_give_each_image_its_batch_1_result(
    exported, checkpoints, tiny_data, head
):
    spec = load_checkpoint(checkpoints[head])["input"]
    images = split_images(tiny_data, "test", spec, 8)[0].numpy()
    session = open_session(exported[head].path, threads=1)
    single = run_batches(session, images, 1)
    for batch in (2, 8):
        for one, many in zip(single, run_batches(session, images, batch), strict=True):
            assert len(one) == len(many) > 0
            np.testing.assert_array_equal(one.labels, many.labels)
            np.testing.assert_allclose(one.boxes, many.boxes, atol=1e-3)
            np.testing.assert_allclose(one.scores, many.scores, atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_the_export_module_computes_what_the_torchvision_model_does(checkpoints, tiny_data, head):
    model, checkpoint = _load(checkpoints, head)
    if head == "ssd":
        model.topk_candidates = 20  # below the 390 default boxes: SSD's pre-NMS filter acts
    images, ids = split_images(tiny_data, "test", checkpoint["input"], 8)
    module = export_module(model, checkpoint["input"]["size"])
    with torch.no_grad():
        out = module(images)
    for i, (image_id, ref) in enumerate(zip(ids, torch_detections(model, images), strict=True)):
        count = int(out.num_detections[i])
        mine = Detections(
            out.boxes[i, :count].numpy(),
            out.scores[i, :count].numpy(),
            out.labels[i, :count].numpy(),
        )
        assert compare_detections(image_id, ref, mine).problem is None
        assert len(mine) == len(ref)


def test_a_fixed_batch_graph_takes_exactly_that_batch(checkpoints, tiny_data, tmp_path):
    result = export_checkpoint(
        checkpoints["ssd"], tmp_path / "b4.onnx", ExportOptions(batch=4, threads=1)
    )
    assert {i.batch_size for i in result.parity.images} == {4} and result.parity.passed
    graph = onnx.load(str(result.path))
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [4, 3, 64, 64]
    session = open_session(result.path, threads=1)
    spec = load_checkpoint(checkpoints["ssd"])["input"]
    images = split_images(tiny_data, "test", spec, 5)[0].numpy()
    assert len(run_batches(session, images, 1)) == 5  # 4 + 1 filled up to a batch of 4


@pytest.mark.parametrize("head", HEADS)
def test_an_empty_image_and_a_crowded_one_share_a_batch(checkpoints, head):
    model, checkpoint = _load(checkpoints, head)
    spec = checkpoint["input"]
    size = spec["size"]
    empty = normalise(blank(size), spec["mean"], spec["std"])
    full = normalise(crowd(size), spec["mean"], spec["std"])
    target = model.roi_heads if head == "fast_rcnn" else model
    # A low threshold gives the crowd many detections, whatever this tiny model learnt on
    # this machine's floating point (at the trained 0.01 some machines leave only a few).
    target.score_thresh = 0.001
    session = open_session(
        trace_to_onnx(
            export_module(model, size), torch.stack([full, empty]), dynamic_batch=True
        ).SerializeToString(),
        threads=1,
    )
    crowded = run_batches(session, full[None].numpy(), 1)[0]
    assert len(crowded) >= 10 and len(crowded) == len(torch_detections(model, full[None])[0])
    # Raise the threshold between the two images' best scores: the image with the lower one
    # (the blank image, unless this tiny model learnt otherwise on this machine's floating
    # point) then has no detection, the other at least one.
    top = [float(d.scores.max()) for d in torch_detections(model, torch.stack([empty, full]))]
    assert top[0] != top[1]
    none, some = (empty, full) if top[0] < top[1] else (full, empty)
    target.score_thresh = (top[0] + top[1]) / 2
    graph = trace_to_onnx(
        export_module(model, size), torch.stack([full, empty]), dynamic_batch=True
    )
    session = open_session(graph.SerializeToString(), threads=1)
    reference = torch_detections(model, torch.stack([none, some, none]))
    assert len(reference[0]) == 0 and len(reference[1]) >= 1
    for batch in ([none], [none, none], [none, some, none], [some] + [none] * 7):
        result = run_batches(session, torch.stack(batch).numpy(), len(batch))
        expected = [0 if image is none else len(reference[1]) for image in batch]
        assert [len(r) for r in result] == expected


def test_the_roi_align_variant_exports_to_onnx_roialign_and_passes_parity(checkpoints, tiny_data):
    model, checkpoint = _load(checkpoints, "fast_rcnn")
    pool = model.roi_heads.box_roi_pool
    model.roi_heads.box_roi_pool = RoIPooler(
        pool.feature_name,
        output_size=pool.output_size,
        spatial_scale=pool.spatial_scale,
        op="align",
    )
    images, ids = split_images(tiny_data, "test", checkpoint["input"], 16)
    graph = trace_to_onnx(
        export_module(model, checkpoint["input"]["size"]), images[:2], dynamic_batch=True
    )
    ops = {node.op_type for node in graph.graph.node}
    assert "RoiAlign" in ops and "MaxRoiPool" not in ops
    report = check_parity(model, open_session(graph.SerializeToString(), threads=1), images, ids)
    assert report.passed, report.summary()


def test_a_pyramid_ssd_trained_without_validation_exports_and_converts(tiny_data, tmp_path):
    """``ssd.fpn_channels`` adds Resize and Add nodes; ``val_split: none`` leaves no
    validation images, so the gate and the fp16 mAP change use training images."""
    out = tmp_path / "run"
    overrides = {
        **tiny_overrides(tiny_data, out, epochs=EPOCHS),
        "train_split": "test",  # 28 images: enough for the 16-image gate
        "val_split": "none",
        "preset": "light",
        "size": 64,
        "ssd.fpn_channels": 16,
    }
    fit(load_config(None, overrides), progress=False)
    result = export_checkpoint(
        out / "best.pt", tmp_path / "fpn.onnx", ExportOptions(threads=1, precision="fp16")
    )
    assert result.parity.passed
    graph = onnx.load(str(result.path))
    assert "Resize" in {node.op_type for node in graph.graph.node}  # the top-down path
    props = {p.key: p.value for p in graph.metadata_props}
    assert props["val_map"] == ""  # nothing was validated during training
    assert set(result.maps) == {"fp32", "fp16"} and result.maps["fp32"] > 0
