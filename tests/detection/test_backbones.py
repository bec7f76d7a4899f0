"""Backbones: the offline ImageNet weights are real, the maps have the documented geometry,
freezing touches exactly what it says, and weights come from files or fail loudly offline."""

from __future__ import annotations

import urllib.error

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from prodet.detection.backbones import STAGE_STRIDES, build_backbone, efficientnet_lite0_classifier
from prodet.detection.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsUnavailableError,
    efficientnet_lite0_weights_file,
    load_in_order,
    load_weights_file,
    normalisation,
    torch_hub_cache_path,
)

STAGE_CHANNELS = {
    "efficientnet_lite0": (16, 24, 40, 112, 320),
    "resnet50": (64, 256, 512, 1024, 2048),
    "vgg16": (64, 128, 256, 512, 512),
    "mobilenet_v3_large": (16, 24, 40, 112, 960),
}
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def test_packaged_efficientnet_file_loads_all_296_tensors_in_order():
    state = load_weights_file(efficientnet_lite0_weights_file())
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    load_in_order(model, state, source="packaged file")
    loaded = model.state_dict()
    assert len(state) == len(loaded) == 296  # the packaged file's entries, buffers included
    assert next(iter(state)) == "_conv_stem.weight" and next(iter(loaded)) == "conv_stem.weight"
    for (found_name, found), (name, value) in zip(state.items(), loaded.items(), strict=True):
        assert torch.equal(found, value), f"{found_name} was not loaded into {name}"


def test_in_order_load_rejects_a_shape_or_count_mismatch():
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    state = load_weights_file(efficientnet_lite0_weights_file())
    state["_conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(ValueError, match=r"#0 _conv_stem.weight \(8, 3, 3, 3\) -> conv_stem"):
        load_in_order(model, state, source="edited")
    state.popitem()
    with pytest.raises(ValueError, match="holds 295 tensors but EfficientNet expects 296"):
        load_in_order(model, state, source="truncated")


def test_packaged_weights_classify_chelsea_as_a_cat():
    from skimage import data  # dev dependency: scikit-image

    photo = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    photo = F.interpolate(photo, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = efficientnet_lite0_classifier()(imagenet_normalise(photo))
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) in IMAGENET_CATS


def test_pretrained_efficientnet_backbone_matches_the_classifier_trunk():
    backbone = build_backbone("efficientnet_lite0", out_indices=(4,))
    classifier = efficientnet_lite0_classifier()
    images = imagenet_normalise(torch.rand(1, 3, 128, 128))
    with torch.no_grad():
        trunk = classifier.blocks(classifier.bn1(classifier.conv_stem(images)))
        features = backbone(images)
    assert list(features) == ["stage4"]
    torch.testing.assert_close(features["stage4"], trunk, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(STAGE_CHANNELS))
def test_feature_maps_have_the_documented_channels_and_strides(name):
    backbone = build_backbone(name, weights=None, out_indices=(0, 1, 2, 3, 4)).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 320, 320))
    assert list(features) == ["stage0", "stage1", "stage2", "stage3", "stage4"]
    assert backbone.out_channels == list(STAGE_CHANNELS[name])
    assert backbone.strides == list(STAGE_STRIDES)
    sizes = zip(STAGE_CHANNELS[name], STAGE_STRIDES, strict=True)
    expected = [(1, channels, 320 // stride, 320 // stride) for channels, stride in sizes]
    assert [tuple(feature.shape) for feature in features.values()] == expected
    assert (backbone.mean, backbone.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_default_outputs_are_the_three_coarsest_stages():
    backbone = build_backbone("mobilenet_v3_large", weights=None)
    features = backbone(torch.randn(2, 3, 96, 128))
    assert [tuple(f.shape) for f in features.values()] == [
        (2, 40, 12, 16),
        (2, 112, 6, 8),
        (2, 960, 3, 4),
    ]
    assert backbone.strides == [8, 16, 32]
    assert len(backbone.stage_modules) == 5


# Hand count of conv weights in the frozen stages (their batch norms become buffers):
# resnet50: conv1 + layer1 (3 bottlenecks x 3 convs + 1 downsample conv) = 11;
# efficientnet_lite0: conv_stem + blocks.0 (dw, pw) + blocks.1 (2 blocks x pw, dw, pwl) = 9.
@pytest.mark.parametrize(("name", "frozen_weights"), [("resnet50", 11), ("efficientnet_lite0", 9)])
def test_freezing_two_stages_turns_off_exactly_their_parameters(name, frozen_weights):
    backbone = build_backbone(name, weights=None, freeze=2, frozen_bn=False)
    prefixes = [f"{module}." for stage in backbone.stage_modules[:2] for module in stage]
    in_frozen_stages = {n for n, _ in backbone.named_parameters() if n.startswith(tuple(prefixes))}
    not_trained = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert not_trained == in_frozen_stages
    assert len(not_trained) == frozen_weights
    batch_norms = [n for n, m in backbone.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and not any(n.startswith(tuple(prefixes)) for n in batch_norms)


def test_freezing_more_stages_than_built_is_refused():
    with pytest.raises(ValueError, match="freeze=4: this backbone has 3 stages"):
        build_backbone("mobilenet_v3_large", weights=None, out_indices=(1, 2), freeze=4)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v3_large"])
def test_frozen_batch_norm_statistics_survive_a_train_mode_forward(name):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64) * 3 + 1
    backbone = build_backbone(name, weights=None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.eval()
    with torch.no_grad():
        in_eval = backbone(images)
    backbone.train()
    in_train = backbone(images)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    for key, feature in in_train.items():
        torch.testing.assert_close(feature, in_eval[key])

    trainable = build_backbone(name, weights=None, frozen_bn=False).train()
    stats = [m.running_mean for m in trainable.modules() if isinstance(m, nn.BatchNorm2d)]
    first = stats[0].clone()
    trainable(images)
    assert not torch.equal(stats[0], first)  # the control: unfrozen statistics do move


def test_offline_without_a_file_names_the_enum_the_cache_and_the_flag(monkeypatch, tmp_path):
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError, match="--backbone-weights PATH") as failure:
        build_backbone("resnet50")
    assert isinstance(failure.value, ValueError)
    message = str(failure.value)
    assert "ResNet50_Weights.IMAGENET1K_V1" in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message


def test_offline_with_the_file_in_the_hub_cache_uses_it(monkeypatch, tmp_path):
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    cached = models.mobilenet_v3_large(weights=None)
    cache = torch_hub_cache_path(models.MobileNet_V3_Large_Weights.IMAGENET1K_V1)
    cache.parent.mkdir(parents=True)
    torch.save(cached.state_dict(), cache)
    backbone = build_backbone("mobilenet_v3_large")
    assert torch.equal(backbone.body.stages[0][0][0].weight, cached.features[0][0].weight)


def test_weights_path_loads_a_torchvision_state_dict(tmp_path):
    source = models.mobilenet_v3_large(weights=None)
    with torch.no_grad():
        source.features[16][1].running_var.uniform_(0.5, 2.0)
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(source.state_dict(), path)
    backbone = build_backbone("mobilenet_v3_large", weights_path=str(path))
    stage0, stage4 = backbone.body.stages[0], backbone.body.stages[4]
    assert torch.equal(stage0[0][0].weight, source.features[0][0].weight)
    assert torch.equal(stage4[-1][0].weight, source.features[16][0].weight)
    assert torch.equal(stage4[-1][1].running_var, source.features[16][1].running_var)


def test_weights_path_loads_an_efficientnet_file_in_order(tmp_path):
    source = timm.create_model("efficientnet_lite0", pretrained=False)
    path = tmp_path / "lite0.pth"
    torch.save(source.state_dict(), path)
    backbone = build_backbone("efficientnet_lite0", weights_path=path)
    last_block = backbone.body.blocks[6][0]
    assert torch.equal(last_block.conv_pwl.weight, source.blocks[6][0].conv_pwl.weight)


def test_weights_path_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "efficientnet.pth"
    torch.save(timm.create_model("efficientnet_lite0", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit MobileNetV3"):
        build_backbone("mobilenet_v3_large", weights_path=str(path))
    with pytest.raises(ValueError, match="does not exist"):
        build_backbone("mobilenet_v3_large", weights_path=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnet18"}, "unknown backbone 'resnet18'"),
        ({"name": "resnet50", "weights": "IMAGENET9K"}, "not in ResNet50_Weights"),
        ({"name": "efficientnet_lite0", "weights": "IMAGENET1K_V1"}, "use 'default' or None"),
        ({"name": "vgg16", "weights": None, "weights_path": "x.pth"}, "drop one of them"),
        ({"name": "mobilenet_v3_large", "weights": None, "out_indices": (3, 2)}, "increasing"),
        ({"name": "efficientnet_lite0", "weights": None, "out_indices": (5,)}, "in 0..4"),
    ],
)
def test_invalid_arguments_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(**kwargs)


def test_images_must_be_batched_rgb():
    backbone = build_backbone("efficientnet_lite0", weights=None)
    with pytest.raises(ValueError, match=r"images \[B, 3, H, W\], got shape \(3, 64, 64\)"):
        backbone(torch.zeros(3, 64, 64))


def test_normalisation_follows_the_weights_enum():
    assert normalisation(models.ResNet50_Weights.IMAGENET1K_V1) == (IMAGENET_MEAN, IMAGENET_STD)
    mean, std = normalisation(models.VGG16_Weights.IMAGENET1K_FEATURES)
    assert mean == (0.48235, 0.45882, 0.40784)
    assert std == pytest.approx((1 / 255,) * 3)
