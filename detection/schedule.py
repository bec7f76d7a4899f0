"""Learning-rate schedules: linear warmup, then cosine, step or exponential decay.

All are per-iteration ``LambdaLR`` multipliers, so a resumed run continues the curve
exactly from the saved scheduler state. ``exponential`` is the course's
``exponential_decay``: ``lr * decay_rate ** (step / steps_per_epoch)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

WARMUP_START = 0.001
COSINE_FLOOR = 0.01


@dataclass
class LrPlan:
    """Multiplier of the base learning rate at iteration ``step``.

    ``total_epochs`` may be shortened once the time budget is known (see the trainer);
    it is part of the checkpoint so a resumed run follows the same curve.
    """

    kind: str
    steps_per_epoch: int
    total_epochs: int
    warmup_epochs: float = 1.0
    step_epochs: int = 10
    gamma: float = 0.1
    decay_rate: float = 0.9

    def __call__(self, step: int) -> float:
        warmup = int(self.warmup_epochs * self.steps_per_epoch)
        if step < warmup:
            return WARMUP_START + (1 - WARMUP_START) * step / warmup
        epoch = step / self.steps_per_epoch
        if self.kind == "cosine":
            total = max(self.total_epochs * self.steps_per_epoch - warmup, 1)
            progress = min((step - warmup) / total, 1.0)
            return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "step":
            return self.gamma ** int(epoch // self.step_epochs)
        if self.kind == "exponential":
            return self.decay_rate**epoch
        if self.kind == "constant":
            return 1.0
        raise ValueError(
            f"unknown schedule {self.kind!r}: use cosine, step, exponential or constant"
        )


def build_scheduler(optimizer: Optimizer, plan: LrPlan) -> LambdaLR:
    """A ``LambdaLR`` stepping once per iteration along ``plan``."""
    return LambdaLR(optimizer, lr_lambda=plan)
