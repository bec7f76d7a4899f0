"""The SSD detector: feature maps with and without the feature pyramid, losses, contract."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.ssd import SSD

from prodet.detection.backbones import efficientnet_lite0_backbone
from prodet.detection.ssd import SSDFeatures, build_ssd, default_scales

SIZE = 128


def _backbone():
    torch.manual_seed(0)
    return efficientnet_lite0_backbone(weights=None)


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[70.0, 20.0, 120.0, 50.0]]), "labels": torch.tensor([2])},
    ]


def test_plain_features_are_the_backbone_maps_then_the_extras():
    backbone = _backbone()
    features = SSDFeatures(backbone, (64, 32)).eval()
    maps = features(torch.zeros(1, 3, SIZE, SIZE))
    assert features.out_channels == [*backbone.out_channels, 64, 32]
    assert [m.shape[1] for m in maps.values()] == features.out_channels
    assert [m.shape[-1] for m in maps.values()] == [16, 8, 4, 2, 1]  # strides 8..128
    assert features.fpn is None


def test_the_pyramid_gives_every_backbone_map_its_channels_and_keeps_the_sizes():
    plain = SSDFeatures(_backbone(), (64, 32)).eval()
    pyramid = SSDFeatures(_backbone(), (64, 32), fpn_channels=48).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    plain_maps, maps = plain(x), pyramid(x)
    assert pyramid.out_channels == [48, 48, 48, 64, 32]
    assert [m.shape[1] for m in maps.values()] == pyramid.out_channels
    assert [m.shape[-2:] for m in maps.values()] == [m.shape[-2:] for m in plain_maps.values()]
    # the extra layers grow from the backbone's last map, not from the pyramid's
    torch.testing.assert_close(maps["3"], pyramid.extras[0](pyramid.body(x)["stage4"]))


def _corner_gradient(features: SSDFeatures) -> float:
    """How much the top-left pixel of the finest map depends on the far bottom-right corner."""
    x = torch.randn(1, 3, SIZE, SIZE, requires_grad=True)
    features.eval()(x)["0"][0, :, 0, 0].sum().backward()
    return float(x.grad[0, :, -16:, -16:].abs().sum())


def test_the_top_down_path_carries_coarse_information_to_the_finest_map():
    # the stride-8 stage alone cannot see the far corner; through the pyramid it does
    assert _corner_gradient(SSDFeatures(_backbone(), (64,))) == 0
    assert _corner_gradient(SSDFeatures(_backbone(), (64,), fpn_channels=32)) > 0


def test_negative_pyramid_channels_are_refused():
    with pytest.raises(ValueError, match="fpn_channels must be >= 0"):
        SSDFeatures(_backbone(), (64,), fpn_channels=-1)


@pytest.mark.parametrize("fpn", [0, 32])
def test_training_losses_and_eval_contract(fpn):
    model = build_ssd(
        backbone=_backbone(), num_classes=3, size=SIZE, extra_channels=(64, 32), fpn_channels=fpn
    )
    images = torch.randn(2, 3, SIZE, SIZE)
    model.train()
    losses = model(list(images), _targets())
    assert set(losses) == {"bbox_regression", "classification"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    if fpn:
        grads = [p.grad for p in model.backbone.fpn.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(list(images))
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}
    assert out[0]["boxes"].shape[1] == 4
    # the same default boxes either way: the pyramid changes features, not the priors
    assert count_default_boxes(model, SIZE) == 16 * 16 * 4 + 8 * 8 * 6 + 4 * 4 * 6 + 2 * 2 * 6 + 4


def test_without_pyramid_the_state_dict_has_no_pyramid_keys():
    model = build_ssd(backbone=_backbone(), num_classes=3, size=SIZE, extra_channels=(64, 32))
    assert not any(".fpn." in k for k in model.state_dict())


def test_default_scales_are_linear_with_a_last_extra_one():
    scales = default_scales(3, 0.1, 0.5)
    assert scales == pytest.approx([0.1, 0.3, 0.5, 1.0])
    with pytest.raises(ValueError, match="min_scale"):
        default_scales(3, 0.6, 0.5)


def count_default_boxes(model: SSD, size: int) -> int:
    """Number of default boxes for a ``size x size`` input: feature cells times anchors."""
    with torch.no_grad():
        maps = list(model.backbone(torch.zeros(1, 3, size, size)).values())
    per_loc = model.anchor_generator.num_anchors_per_location()
    return sum(m.shape[-2] * m.shape[-1] * k for m, k in zip(maps, per_loc, strict=True))
