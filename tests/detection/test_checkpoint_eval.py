"""Rebuilding a model from a checkpoint: which weights (EMA or raw) and which layout."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from prodet.detection.checkpoint_eval import model_from_checkpoint
from prodet.detection.config import TrainConfig
from prodet.detection.model_factory import build_model


def _checkpoint(with_ema: bool) -> dict:
    config = TrainConfig(head="ssd", size=128, backbone_weights="none")
    model = build_model(config, num_classes=3, pretrained=False)
    raw = model.state_dict()
    ema = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in raw.items()}
    return {
        "config": dataclasses.asdict(config),
        "classes": ["__background__", "a", "b"],
        "model": raw,
        "ema": ema if with_ema else None,
    }


def _first_weight(model: torch.nn.Module) -> torch.Tensor:
    return next(p for p in model.parameters() if p.ndim == 4)


def test_ema_weights_are_the_default_when_the_run_kept_them():
    checkpoint = _checkpoint(with_ema=True)
    model, _ = model_from_checkpoint(checkpoint)
    assert torch.all(_first_weight(model) == 0.5)
    raw, _ = model_from_checkpoint(checkpoint, use_ema=False)
    assert not torch.all(_first_weight(raw) == 0.5)


def test_raw_weights_without_ema_and_a_clear_error_when_ema_is_asked_for():
    checkpoint = _checkpoint(with_ema=False)
    model, _ = model_from_checkpoint(checkpoint)
    name = next(n for n, p in model.named_parameters() if p.ndim == 4)
    assert torch.equal(_first_weight(model), checkpoint["model"][name])
    with pytest.raises(ValueError, match="no EMA weights"):
        model_from_checkpoint(checkpoint, use_ema=True)


def test_channels_last_layout_gives_the_same_detections():
    checkpoint = _checkpoint(with_ema=False)
    plain, _ = model_from_checkpoint(checkpoint)
    nhwc, _ = model_from_checkpoint(checkpoint, channels_last=True)
    assert _first_weight(nhwc).is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = plain(list(images)), nhwc(list(images))
    for x, y in zip(a, b, strict=True):
        assert len(x["boxes"]) == len(y["boxes"])
        torch.testing.assert_close(x["scores"], y["scores"], atol=1e-4, rtol=1e-4)


def test_proposals_set_fast_rcnn_test_time_rois_and_refuse_ssd():
    config = TrainConfig(head="fast_rcnn", size=128, backbone_weights="none")
    model = build_model(config, num_classes=3, pretrained=False)
    checkpoint = {
        "config": dataclasses.asdict(config),
        "classes": ["__background__", "a", "b"],
        "model": model.state_dict(),
        "ema": None,
    }
    rebuilt, rebuilt_config = model_from_checkpoint(checkpoint, proposals=50)
    assert rebuilt.rpn._post_nms_top_n["testing"] == 50
    assert rebuilt_config.fast_rcnn.rpn_pre_nms_test >= 50
    with pytest.raises(ValueError, match="at least 1"):
        model_from_checkpoint(checkpoint, proposals=0)
    with pytest.raises(ValueError, match="Fast R-CNN"):
        model_from_checkpoint(_checkpoint(with_ema=False), proposals=50)
