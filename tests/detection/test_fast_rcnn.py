"""Fast R-CNN: RoI max pooling against hand-computed grids, the torchvision contract on tiny
images, training on a fixed batch, precomputed proposals, and a run from fit to evaluation."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import RoIAlign, RoIPool

from prodet.annotations.convert import convert_folder
from prodet.annotations.pickle_store import dump_dataset
from prodet.datasets.geometry import ResizeGeometry
from prodet.detection.backbones import build_backbone
from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.checkpoint_eval import evaluate_checkpoint
from prodet.detection.config import load_config
from prodet.detection.fast_rcnn import FastRCNN, build_fast_rcnn
from prodet.detection.model_factory import build_model
from prodet.detection.proposals import load_proposals, proposals_for_batch, save_proposals
from prodet.detection.roi_pooler import RoIPooler
from prodet.detection.trainer import fit
from tests.annotations.voc_factory import make_voc

SIZE = 128
NUM_CLASSES = 3

# A 4 x 4 stride-16 map (one channel); cell (row, col) covers input pixels 16*col.., 16*row..
MAP = torch.tensor(
    [
        [1.0, 5.0, 2.0, 0.0],
        [3.0, 4.0, 8.0, 1.0],
        [0.0, 9.0, 6.0, 7.0],
        [2.0, 1.0, 3.0, 4.0],
    ]
)


def tiny_model(freeze: int = 0, **kwargs) -> FastRCNN:
    torch.manual_seed(0)
    backbone = build_backbone("efficientnet_lite0", weights=None, out_indices=(3,), freeze=freeze)
    options = {"size": SIZE, "representation": 128, **kwargs}
    return build_fast_rcnn(backbone=backbone, num_classes=NUM_CLASSES, **options)


def tiny_batch() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    torch.manual_seed(1)
    images = torch.randn(2, 3, SIZE, SIZE)
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0], [70.0, 20.0, 120.0, 100.0]]),
         "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[30.0, 40.0, 90.0, 110.0]]), "labels": torch.tensor([2])},
    ]  # fmt: skip
    return images, targets


def test_roi_pool_matches_a_hand_computed_max_grid():
    features = {"stage3": torch.stack([MAP, 10 * MAP])[:, None]}  # [2, 1, 4, 4]
    pooler = RoIPooler("stage3", output_size=2, spatial_scale=1 / 16)
    proposals = [
        # Whole map: four 2 x 2 bins.
        # Cells x 1..3, y 1..2 (rounded from 16/16 .. 48/16, 20/16 .. 36/16): 3 x 2 cells,
        # bins of 1.5 columns overlap in column 2 (floor/ceil), one row each.
        torch.tensor([[0.0, 0.0, 48.0, 48.0], [16.0, 20.0, 48.0, 36.0]]),
        torch.tensor([[0.0, 0.0, 48.0, 48.0]]),
    ]
    pooled = pooler(features, proposals, [(64, 64), (64, 64)])
    expected = torch.tensor(
        [
            [[5.0, 8.0], [9.0, 7.0]],
            [[8.0, 8.0], [9.0, 7.0]],
            [[50.0, 80.0], [90.0, 70.0]],
        ]
    )[:, None]
    assert pooled.shape == (3, 1, 2, 2)
    assert torch.equal(pooled, expected)


def test_roi_ops_are_torchvisions_and_align_averages_a_constant_map():
    assert isinstance(RoIPooler("m", spatial_scale=1 / 16).op, RoIPool)
    align = RoIPooler("m", spatial_scale=1 / 16, op="align")
    assert isinstance(align.op, RoIAlign)
    pooled = align(
        {"m": torch.full((1, 3, 8, 8), 2.5)}, [torch.tensor([[8.0, 8.0, 96.0, 64.0]])], []
    )
    assert pooled.shape == (1, 3, 7, 7)
    assert torch.allclose(pooled, torch.full_like(pooled, 2.5))
    with pytest.raises(ValueError, match="'stage3'"):
        RoIPooler("stage3", spatial_scale=1 / 16)({"stage4": MAP[None, None]}, [], [])


def test_the_internal_transform_is_the_identity_on_square_inputs():
    model = tiny_model()
    images, targets = tiny_batch()
    for training in (True, False):
        model.train(training)
        image_list, moved = model.transform(list(images), [dict(t) for t in targets])
        assert torch.equal(image_list.tensors, images)
        assert image_list.image_sizes == [(SIZE, SIZE)] * 2
        assert torch.equal(moved[0]["boxes"], targets[0]["boxes"])


def test_training_losses_and_eval_detections_follow_torchvisions_contract():
    model = tiny_model(dropout=0.0)
    images, targets = tiny_batch()
    pooled_shapes = []
    model.roi_heads.box_roi_pool.register_forward_hook(
        lambda module, args, out: pooled_shapes.append(tuple(out.shape))
    )
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(v.dim() == 0 and math.isfinite(v.item()) for v in losses.values())
    # Scores start near uniform (std 0.01 init): cross-entropy ~ ln(num_classes).
    assert abs(losses["loss_classifier"].item() - math.log(NUM_CLASSES)) < 0.2
    assert abs(losses["loss_objectness"].item() - math.log(2)) < 0.05
    rois, channels, height, width = pooled_shapes[0]
    assert (channels, height, width) == (112, 7, 7) and rois <= 2 * 128

    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        count = det["boxes"].shape[0]
        assert det["boxes"].shape == (count, 4) and 0 < count <= 100
        assert det["scores"].shape == det["labels"].shape == (count,)
        assert det["labels"].dtype == torch.int64
        assert det["labels"].min() >= 1 and det["labels"].max() < NUM_CLASSES
        assert det["boxes"].min() >= 0 and det["boxes"].max() <= SIZE
        assert torch.all(det["boxes"][:, 2:] >= det["boxes"][:, :2])
    assert 0 < pooled_shapes[1][0] <= 2 * 100  # at most rpn_post_nms_test per image


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    model = tiny_model(freeze=4, dropout=0.0)  # RPN and head only: the backward pass is cheap
    images, targets = tiny_batch()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.02, momentum=0.9)
    model.train()
    history = []
    for _ in range(8):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.6 * history[0], history


def test_precomputed_proposals_replace_the_rpn():
    model = tiny_model(proposal_source="precomputed")
    assert model.rpn is None
    images, targets = tiny_batch()
    proposals = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [12.0, 8.0, 62.0, 72.0]]), torch.zeros(0, 4)]
    model.train()
    losses = model(images, targets, proposals=proposals)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    model.eval()
    with torch.no_grad():
        detections = model(images, proposals=proposals)
        assert detections[1]["boxes"].shape == (0, 4)  # no proposals, no detections
        assert detections[0]["boxes"].shape[0] <= 2 * (NUM_CLASSES - 1)
        with pytest.raises(ValueError, match="precomputed"):
            model(images)
        with pytest.raises(ValueError, match=r"\[P, 4\]"):
            model(images, proposals=[torch.zeros(3), torch.zeros(0, 4)])
    with_rpn = tiny_model().train()
    assert set(with_rpn(images, targets, proposals=proposals)) == {
        "loss_classifier",
        "loss_box_reg",
    }


def test_proposal_files_round_trip_and_map_onto_the_model_input(tmp_path: Path):
    path = tmp_path / "proposals.npz"
    save_proposals(path, {"img1": np.array([[10, 20, 110, 220]]), "img2": np.zeros((0, 4))})
    store = load_proposals(path)
    assert store["img2"].shape == (0, 4)
    targets = [
        # input = original * (0.5, 0.25) + (4, 0)
        {
            "image_id": "img1",
            "geometry": ResizeGeometry((84, 200), (50, 50), (0.5, 0.25), (4, 0), (42, 50)),
        },
        {"image_id": "img2", "geometry": ResizeGeometry.identity(50, 50)},
    ]
    mapped = proposals_for_batch(store, targets, size=50)
    assert torch.equal(mapped[0], torch.tensor([[9.0, 5.0, 50.0, 50.0]]))  # 59 clipped to 50
    assert mapped[1].shape == (0, 4)
    with pytest.raises(ValueError, match="'eval' preset"):
        proposals_for_batch(store, [{"image_id": "img1", "geometry": None}], size=50)
    with pytest.raises(ValueError, match="no precomputed proposals for image 'img3'"):
        proposals_for_batch(store, [{"image_id": "img3"}], size=50)
    with pytest.raises(ValueError, match=r"expected \[P, 4\]"):
        save_proposals(path, {"bad": np.zeros((2, 5))})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "background"),
        ({"roi_op": "avg"}, "roi_op='avg'"),
        ({"proposal_source": "selective"}, "'rpn' or 'precomputed'"),
        ({"anchor_sizes": ()}, "anchor_sizes"),
    ],
)
def test_builder_rejects_bad_arguments(kwargs, message):
    backbone = build_backbone("efficientnet_lite0", weights=None, out_indices=(3,))
    with pytest.raises(ValueError, match=message):
        build_fast_rcnn(backbone=backbone, **{"num_classes": NUM_CLASSES, **kwargs})


def test_builder_rejects_a_multi_map_backbone():
    backbone = build_backbone("efficientnet_lite0", weights=None, out_indices=(2, 3))
    with pytest.raises(ValueError, match=r"out_indices=\(3,\)"):
        build_fast_rcnn(backbone=backbone, num_classes=NUM_CLASSES)


def test_model_factory_builds_fast_rcnn_from_the_config():
    config = load_config(
        None,
        {
            "head": "fast_rcnn",
            "backbone_weights": "none",
            "fast_rcnn.roi_op": "align",
            "fast_rcnn.anchor_sizes": "32,64",
            "fast_rcnn.representation": 64,
        },
    )
    model = build_model(config, NUM_CLASSES)
    assert isinstance(model, FastRCNN)
    assert isinstance(model.roi_heads.box_roi_pool.op, RoIAlign)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [2 * 3]
    assert model.backbone.strides == [16] and model.backbone.out_channels == [112]
    assert model.roi_heads.box_head.fc7.out_features == 64


def test_fit_then_evaluate_a_checkpoint_on_a_tiny_split(tmp_path: Path):
    boxes = {
        f"im{i}": (96, 80, [("can", 8 + i, 10, 50 + i, 60), ("box", 50, 30, 90, 75)])
        for i in range(6)
    }
    root = make_voc(
        tmp_path / "voc",
        boxes,
        splits={"trainval": ["im0", "im1", "im2", "im3"], "val": ["im4"], "test": ["im5"]},
    )
    data = tmp_path / "tiny.pkl"
    dump_dataset(convert_folder(root, workers=1).dataset, data)
    out = tmp_path / "run"
    config = load_config(
        None,
        {
            "data": str(data),
            "out": str(out),
            "head": "fast_rcnn",
            "backbone_weights": "none",
            "epochs": 1,
            "batch_size": 2,
            "size": SIZE,
            "workers": 0,
            "freeze": 4,
            "fast_rcnn.representation": 64,
        },
    )
    result = fit(config, progress=False)
    assert result.epochs_done == 1
    for name in ("best.pt", "last.pt", "metrics.csv", "config.yaml"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and float(rows[0]["images_per_s"]) > 0
    assert 0 <= float(rows[0]["val_map_area"]) <= 1
    assert float(rows[0]["train_loss_classifier"]) > 0

    summary = evaluate_checkpoint(out / "best.pt", data, "test", tmp_path / "eval")
    assert summary["headline"]["head"] == "fast_rcnn"
    assert summary["headline"]["images"] == 1
    written = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert [row["name"] for row in written["per_class"]] == ["box", "can"]
    assert [row["npos"] for row in written["per_class"]] == [1, 1]  # im5's two boxes
    assert written["voc"]["map_area"] == pytest.approx(
        summary["headline"]["voc_map_area@0.5"], abs=1e-4
    )


def test_fit_and_evaluate_with_a_precomputed_proposals_file(tmp_path: Path):
    boxes = {f"im{i}": (96, 80, [("can", 8 + i, 10, 50 + i, 60)]) for i in range(5)}
    root = make_voc(
        tmp_path / "voc",
        boxes,
        splits={"trainval": ["im0", "im1", "im2"], "val": ["im3"], "test": ["im4"]},
    )
    data = tmp_path / "tiny.pkl"
    dump_dataset(convert_folder(root, workers=1).dataset, data)
    # Per image: a box near the object and a background box, in original-image pixels.
    store = {f"im{i}": np.float32([[6 + i, 8, 52 + i, 62], [60, 50, 95, 79]]) for i in range(5)}
    save_proposals(tmp_path / "proposals.npz", store)
    overrides = {
        "data": str(data),
        "out": str(tmp_path / "run"),
        "head": "fast_rcnn",
        "backbone_weights": "none",
        "epochs": 1,
        "batch_size": 2,
        "size": SIZE,
        "workers": 0,
        "freeze": 4,
        "preset": "eval",
        "fast_rcnn.representation": 64,
        "fast_rcnn.proposals_file": str(tmp_path / "proposals.npz"),
    }
    with pytest.raises(ValueError, match="--preset eval"):
        load_config(None, {**overrides, "preset": "light"})
    result = fit(load_config(None, overrides), progress=False)
    assert result.epochs_done == 1 and np.isfinite(result.history[0]["train_loss"])
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    assert not any(key.startswith("rpn.") for key in checkpoint["model"])  # no RPN trained
    summary = evaluate_checkpoint(tmp_path / "run" / "best.pt", data, "test", tmp_path / "ev")
    assert summary["headline"]["images"] == 1
    del store["im4"]
    save_proposals(tmp_path / "partial.npz", store)
    with pytest.raises(ValueError, match="no precomputed proposals for image 'im4'"):
        evaluate_checkpoint(
            tmp_path / "run" / "best.pt",
            data,
            "test",
            tmp_path / "ev2",
            proposals_file=tmp_path / "partial.npz",
        )
