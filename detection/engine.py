"""One training epoch and one prediction pass, for any detector with torchvision's contract.

A detector takes ``images`` float ``[B, 3, H, W]`` (normalised) and, in training,
``targets`` (list of ``{"boxes": [N, 4] x1,y1,x2,y2 input pixels, "labels": [N]}``) and
returns a dict of losses; in eval it returns one ``{"boxes", "scores", "labels"}`` per
image. Both heads (SSD, Fast R-CNN) follow it, so this loop serves both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm  # no types-tqdm stubs installed

from prodet.datasets.geometry import boxes_to_original

# Per batch: the loader's targets and the input side -> per image [P, 4] proposals.
ProposalFn = Callable[[Sequence[Mapping[str, Any]], int], list[Tensor]]


class NonFiniteLossError(RuntimeError):
    """Training diverged (NaN or inf loss); lower the learning rate or raise warmup."""


def _to_device(images: Any, targets: list[dict[str, Any]], device: torch.device):
    if isinstance(images, list):
        images = torch.stack(images)
    images = images.to(device, non_blocking=True)
    model_targets = [
        {"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets
    ]
    return images, model_targets


def _on(
    proposals: ProposalFn, targets: Sequence[Mapping[str, Any]], images: Tensor
) -> list[Tensor]:
    return [p.to(images.device) for p in proposals(targets, int(images.shape[-1]))]


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: Optimizer,
    scheduler: LRScheduler,
    *,
    device: torch.device,
    epoch: int,
    grad_clip: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: AveragedModel | None = None,
    progress: bool = True,
    deadline: float | None = None,
    proposals: ProposalFn | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader``; the scheduler steps once per iteration.

    Args:
        proposals: precomputed proposals per batch (Fast R-CNN without its RPN); None
            lets the model propose.
        deadline: ``time.monotonic()`` value after which the epoch stops early (the
            ``--max-minutes`` budget); the returned ``"complete"`` is then 0.

    Returns:
        Mean of each loss, ``"loss"`` (their sum), ``"images_per_s"``, ``"lr"`` at the
        end, ``"complete"`` (1.0 or 0.0).

    Raises:
        NonFiniteLossError: a loss became NaN or inf.
    """
    model.train()
    sums: dict[str, float] = {}
    images_seen = 0
    complete = 1.0
    started = time.perf_counter()
    amp_scaler = scaler if device.type == "cuda" else None
    use_amp = amp_scaler is not None
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
    for images, targets in bar:
        images, model_targets = _to_device(images, targets, device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
        extra = {} if proposals is None else {"proposals": _on(proposals, targets, images)}
        with autocast:
            losses = model(images, model_targets, **extra)
        loss = sum(losses.values())
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise NonFiniteLossError(
                f"epoch {epoch}: loss is {loss_value} ({parts}); lower --lr or raise warmup_epochs"
            )
        optimizer.zero_grad(set_to_none=True)
        if amp_scaler is not None:
            amp_scaler.scale(loss).backward()
            amp_scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if amp_scaler is not None:
            amp_scaler.step(optimizer)
            amp_scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        batch = images.shape[0]
        images_seen += batch
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * batch
        sums["loss"] = sums.get("loss", 0.0) + loss_value * batch
        rate = images_seen / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{rate:.1f}")
        if deadline is not None and time.monotonic() > deadline:
            complete = 0.0
            break
    bar.close()
    means = {k: v / max(images_seen, 1) for k, v in sums.items()}
    means["images_per_s"] = images_seen / max(time.perf_counter() - started, 1e-9)
    means["lr"] = optimizer.param_groups[0]["lr"]
    means["complete"] = complete
    return means


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device,
    progress: bool = False,
    proposals: ProposalFn | None = None,
) -> tuple[list[dict[str, np.ndarray]], float]:
    """Run ``model`` in eval mode over a loader built with the ``eval`` preset.

    ``proposals``: precomputed proposals per batch (see ``train_one_epoch``).

    Returns:
        One ``{"image_id", "boxes" [K, 4] in original-image pixels, "scores" [K],
        "labels" [K]}`` per image in loader order, and the mean milliseconds per image
        spent in the model (pre/post-processing inside the model included, data loading
        excluded).
    """
    model.eval()
    out: list[dict[str, np.ndarray]] = []
    model_seconds = 0.0
    for images, targets in tqdm(
        loader, desc="predict", unit="batch", leave=False, disable=not progress
    ):
        images, _ = _to_device(images, targets, device)
        extra = {} if proposals is None else {"proposals": _on(proposals, targets, images)}
        started = time.perf_counter()
        detections = model(images, **extra)
        model_seconds += time.perf_counter() - started
        for det, target in zip(detections, targets, strict=True):
            boxes = det["boxes"].float().cpu().numpy()
            if target.get("geometry") is not None:
                boxes = boxes_to_original(boxes, target["geometry"])
            out.append(
                {
                    "image_id": target["image_id"],
                    "boxes": boxes,
                    "scores": det["scores"].float().cpu().numpy(),
                    "labels": det["labels"].cpu().numpy().astype(np.int64),
                }
            )
    return out, 1000.0 * model_seconds / max(len(out), 1)
