"""Parameter groups: backbone and head learning rates, no decay on 1-D parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prodet.detection.backbones import build_backbone
from prodet.detection.param_groups import param_groups


class TinyDetector(nn.Module):
    def __init__(self, *, freeze: int, frozen_bn: bool) -> None:
        super().__init__()
        self.backbone = build_backbone(
            "mobilenet_v3_large", weights=None, freeze=freeze, frozen_bn=frozen_bn
        )
        self.head = nn.Conv2d(960, 4, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)["stage4"])


def test_groups_split_backbone_from_head_and_decay_from_no_decay():
    model = TinyDetector(freeze=1, frozen_bn=False)
    groups = param_groups(model, backbone_lr=0.001, head_lr=0.01, weight_decay=4e-5)
    by_name = {group["name"]: group for group in groups}
    assert list(by_name) == ["backbone", "backbone_no_decay", "head", "head_no_decay"]
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [
        (0.001, 4e-5),
        (0.001, 0.0),
        (0.01, 4e-5),
        (0.01, 0.0),
    ]
    assert by_name["head"]["params"] == [model.head.weight]
    assert by_name["head_no_decay"]["params"] == [model.head.bias]
    assert all(p.ndim > 1 for p in by_name["backbone"]["params"])
    assert all(p.ndim == 1 for p in by_name["backbone_no_decay"]["params"])
    grouped = [id(p) for group in groups for p in group["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)  # each trainable parameter exactly once
    # Stage 0 is frozen and left out: the stem conv and the first block's two convs (its
    # batch norms are buffers).
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    stage0 = {n for n, _ in model.named_parameters() if n.startswith("backbone.body.stages.0.")}
    assert frozen == stage0 and len(frozen) == 3


def test_frozen_batch_norm_leaves_only_conv_biases_undecayed_and_optimiser_steps():
    model = TinyDetector(freeze=0, frozen_bn=True)
    groups = param_groups(model, backbone_lr=0.0, head_lr=0.1, weight_decay=0.0)
    no_decay = {id(p) for p in groups[1]["params"]}
    biases = {id(p) for n, p in model.backbone.named_parameters() if n.endswith(".bias")}
    assert groups[1]["name"] == "backbone_no_decay"
    assert no_decay == biases and biases  # squeeze-excitation conv biases; no BN weights left
    optimiser = torch.optim.SGD(groups, lr=1.0)
    stem = model.backbone.body.stages[0][0][0].weight.detach().clone()
    bias = model.head.bias.detach().clone()
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    optimiser.step()
    assert torch.equal(model.backbone.body.stages[0][0][0].weight, stem)  # lr 0
    assert not torch.equal(model.head.bias, bias)


def test_model_without_backbone_or_with_negative_rates_is_refused():
    with pytest.raises(ValueError, match=r"contains no detection\.backbones\.Backbone"):
        param_groups(nn.Linear(2, 2), backbone_lr=0.1, head_lr=0.1, weight_decay=0.0)
    model = TinyDetector(freeze=0, frozen_bn=True)
    with pytest.raises(ValueError, match=r"backbone_lr=-0\.1"):
        param_groups(model, backbone_lr=-0.1, head_lr=0.1, weight_decay=0.0)
