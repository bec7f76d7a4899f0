"""Freeze the early stages and the batch-norm statistics of a pretrained backbone.

Batch norm is frozen by replacing each ``BatchNorm2d`` with ``torchvision.ops.FrozenBatchNorm2d``
(timm's ``BatchNormAct2d``, which fuses an activation, with timm's ``FrozenBatchNormAct2d``).
Statistics and affine terms become buffers holding the pretrained values, so a later ``.train()``
cannot re-enable updates and no optimiser ever receives them. Detection batches are small;
statistics estimated from them would be noisier than the ImageNet ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import BatchNormAct2d, FrozenBatchNormAct2d
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


def freeze_batch_norm(root: nn.Module, *, within: Sequence[str] | None = None) -> int:
    """Replace ``BatchNorm2d`` layers under ``root`` by frozen copies; return how many.

    ``within`` limits the replacement to modules whose qualified names (relative to ``root``)
    are, or lie under, one of the given names; ``None`` replaces all of them.
    """
    targets = [
        name
        for name, module in root.named_modules()
        if isinstance(module, nn.BatchNorm2d)
        and (within is None or any(name == p or name.startswith(f"{p}.") for p in within))
    ]
    for name in targets:
        if not name:
            raise ValueError("freeze_batch_norm needs a container; root itself is a batch norm")
        parent, _, attribute = name.rpartition(".")
        holder = root.get_submodule(parent)
        setattr(holder, attribute, _frozen_copy(getattr(holder, attribute)))
    return len(targets)


def _frozen_copy(norm: nn.BatchNorm2d) -> nn.Module:
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError(f"{norm} tracks no running statistics, so there is nothing to freeze")
    if isinstance(norm, BatchNormAct2d):
        frozen: nn.Module = FrozenBatchNormAct2d(norm.num_features, eps=norm.eps)
        frozen.act = norm.act
        frozen.drop = norm.drop
    else:
        frozen = FrozenBatchNorm2d(norm.num_features, eps=norm.eps)
    frozen = frozen.to(norm.running_mean.device)
    with torch.no_grad():
        frozen.get_buffer("running_mean").copy_(norm.running_mean)
        frozen.get_buffer("running_var").copy_(norm.running_var)
        if norm.affine:
            frozen.get_buffer("weight").copy_(norm.weight)
            frozen.get_buffer("bias").copy_(norm.bias)
    return frozen


def freeze_stages(
    root: nn.Module, stage_modules: Sequence[Sequence[str]], count: int, *, frozen_bn: bool
) -> None:
    """Stop training the first ``count`` stages of ``root``; optionally freeze all batch norm.

    Args:
        root: the module the names in ``stage_modules`` are relative to.
        stage_modules: for each stage, in order, the qualified names of its modules.
        count: stages ``0 .. count-1`` get ``requires_grad=False`` and frozen batch norm
            (a frozen stage must not drift through its running statistics either).
        frozen_bn: also freeze the batch norm of the stages that stay trainable.
    """
    if not 0 <= count <= len(stage_modules):
        raise ValueError(
            f"freeze={count}: this backbone has {len(stage_modules)} stages (up to the deepest "
            f"requested output); choose a number from 0 to {len(stage_modules)}"
        )
    frozen = [name for stage in stage_modules[:count] for name in stage]
    freeze_batch_norm(root, within=None if frozen_bn else frozen)
    for name in frozen:
        root.get_submodule(name).requires_grad_(False)
