"""Distributed data parallel through ``torchrun`` (multi-GPU and multi-node).

``torchrun --nproc_per_node=N -m prodet train ...`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; ``setup`` then joins the process group (NCCL on CUDA,
gloo on CPU), each rank reads its own shard of every epoch through a
``DistributedSampler``, and only rank 0 evaluates, logs and writes checkpoints. Without
those variables everything here is a single-process no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Sampler

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel`` around ``model`` when distributed, else ``model``."""
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sampler(self, dataset: Dataset, seed: int, epoch: int) -> Sampler | None:
        """This rank's shard of ``dataset`` for ``epoch`` (None when not distributed)."""
        if self.world_size == 1:
            return None
        sampler: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed
        )
        sampler.set_epoch(epoch)
        return sampler

    def share(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a picklable object); identity when single."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def cleanup(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup() -> DistContext:
    """Join the process group if launched by ``torchrun``; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, device)
