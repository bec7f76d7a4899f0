"""Optimiser parameter groups: a separate learning rate for the pretrained backbone.

A pretrained backbone usually wants a smaller learning rate than freshly initialised heads.
Biases and normalisation weights (every parameter with fewer than two dimensions) get no
weight decay, since shrinking them towards zero only shifts activations.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prodet.detection.backbones import Backbone


def param_groups(
    model: nn.Module, *, backbone_lr: float, head_lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``model`` into groups for a ``torch.optim`` optimiser.

    Parameters inside any ``Backbone`` submodule get ``backbone_lr``, all others ``head_lr``;
    within each, matrices and kernels get ``weight_decay`` and 1-D parameters 0. Frozen
    parameters (``requires_grad=False``) and empty groups are left out. Each group carries a
    ``"name"`` (``"backbone"``, ``"backbone_no_decay"``, ``"head"``, ``"head_no_decay"``).

    Raises:
        ValueError: a learning rate or the weight decay is negative, or ``model`` contains no
            ``Backbone`` (a model built without one should use a single group).
    """
    if backbone_lr < 0 or head_lr < 0 or weight_decay < 0:
        raise ValueError(
            f"learning rates and weight decay must be >= 0, got backbone_lr={backbone_lr}, "
            f"head_lr={head_lr}, weight_decay={weight_decay}"
        )
    backbones = [module for module in model.modules() if isinstance(module, Backbone)]
    if not backbones:
        raise ValueError(
            f"{type(model).__name__} contains no detection.backbones.Backbone; build it with "
            "build_backbone(...) or pass model.parameters() to the optimiser directly"
        )
    backbone_ids = {id(parameter) for module in backbones for parameter in module.parameters()}
    groups: dict[str, dict[str, Any]] = {
        "backbone": {"lr": backbone_lr, "weight_decay": weight_decay},
        "backbone_no_decay": {"lr": backbone_lr, "weight_decay": 0.0},
        "head": {"lr": head_lr, "weight_decay": weight_decay},
        "head_no_decay": {"lr": head_lr, "weight_decay": 0.0},
    }
    members: dict[str, list[nn.Parameter]] = {name: [] for name in groups}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        part = "backbone" if id(parameter) in backbone_ids else "head"
        members[part if parameter.ndim > 1 else f"{part}_no_decay"].append(parameter)
    return [
        {"name": name, "params": members[name], **settings}
        for name, settings in groups.items()
        if members[name]
    ]
