"""``fit``: the training run: data, model, optimiser, schedule, checkpoints, resume, logs.

Exact resume: each epoch's data order and augmentation come from a loader seeded with
``seed * 1000 + epoch`` (not from state carried over between epochs), and the
checkpoint written after every epoch holds the model, optimiser, scheduler, EMA, the
schedule's horizon, the history and all RNG states. A run killed at any point and
resumed with ``--resume`` therefore replays the remaining epochs as the uninterrupted
run would have.

Time budget: with ``max_minutes``, after every epoch the mean epoch time so far sets the
cosine horizon to the number of epochs that fit, so the schedule anneals inside the
budget (a slow first epoch on a busy machine is corrected later); an epoch still running
at the deadline stops early.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from prodet.annotations.atomic import atomic_write_bytes
from prodet.annotations.pickle_store import load_dataset
from prodet.annotations.schema import VocDataset
from prodet.datasets.augment import build_transform
from prodet.datasets.detection_dataset import DetectionDataset, split_ids
from prodet.datasets.geometry import check_resize_mode
from prodet.datasets.loader import build_loader
from prodet.detection import distributed
from prodet.detection.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from prodet.detection.config import NO_VALIDATION, TrainConfig, config_to_yaml
from prodet.detection.engine import train_one_epoch
from prodet.detection.evaluate import evaluate_model
from prodet.detection.model_factory import build_model, find_backbone
from prodet.detection.param_groups import param_groups
from prodet.detection.proposals import proposal_fn
from prodet.detection.run_log import TensorBoardLog, plot_curves, write_metrics_csv
from prodet.detection.schedule import LrPlan, build_scheduler

logger = logging.getLogger(__name__)

# Called on the main rank after each epoch with that epoch's metrics row (``epoch``,
# ``train_loss``, ``val_map_area`` when validated, ``elapsed_s``, ...); a returned string
# stops the run after the epoch's checkpoint and becomes ``stopped_because``. ``prodet
# tune`` injects one that reports to its Optuna trial and returns "pruned".
EpochCallback = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_map: float
    epochs_done: int
    history: list[dict[str, Any]]
    stopped_because: str


def resolve_splits(voc: VocDataset, config: TrainConfig) -> tuple[list[str], list[str]]:
    """Training and validation ids: the named val split, or one carved from training.

    ``val_split="none"`` trains on the whole training split and validates nothing.
    """
    if config.train_split not in voc.splits:
        known = ", ".join(sorted(voc.splits)) or "none"
        raise ValueError(f"train_split {config.train_split!r} not in the dataset (has: {known})")
    train = list(voc.splits[config.train_split])
    if config.val_split == NO_VALIDATION:
        return train, []
    if config.val_split in voc.splits and config.val_split != config.train_split:
        return train, list(voc.splits[config.val_split])
    return split_ids(train, config.val_fraction, config.seed)


def epochs_without_improvement(history: list[dict[str, Any]]) -> int:
    """Evaluated epochs since the best validation mAP (0 when the last one is the best)."""
    maps = [row["val_map_area"] for row in history if "val_map_area" in row]
    if not maps:
        return 0
    best = max(range(len(maps)), key=lambda i: (maps[i], -i))
    return len(maps) - 1 - best


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(
        model,
        backbone_lr=config.lr * config.backbone_lr_mult,
        head_lr=config.lr,
        weight_decay=config.weight_decay,
    )
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


class _Run:
    """Everything one training run holds; split from ``fit`` for readability."""

    def __init__(
        self, config: TrainConfig, *, progress: bool, voc: VocDataset | None = None
    ) -> None:
        self.config = config
        self.progress = progress
        self.dist = distributed.setup()
        self.device = self.dist.device
        self.out = Path(config.out)
        torch.manual_seed(config.seed)
        self.voc = voc if voc is not None else load_dataset(config.data)
        train_ids, val_ids = resolve_splits(self.voc, config)
        model = build_model(config, len(self.voc.classes)).to(self.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        backbone = find_backbone(model)
        self.input_spec = {
            "size": config.size,
            "mean": list(backbone.mean),
            "std": list(backbone.std),
            "resize_mode": config.resize_mode,
        }
        # Training and validation images share the input geometry and normalisation.
        transform = functools.partial(
            build_transform,
            size=config.size,
            mean=backbone.mean,
            std=backbone.std,
            resize_mode=check_resize_mode(config.resize_mode),
        )
        train_tf = transform(config.preset, pca_color=config.pca_color, mosaic=config.mosaic)
        eval_tf = transform("eval")
        images = functools.partial(
            DetectionDataset,
            self.voc,
            cache=config.cache,
            cache_mb=config.cache_mb,
            cache_dir=config.cache_dir or None,
            fast_jpeg=config.fast_jpeg,
            oversample=config.decode_oversample,
        )
        self.train_set = images(ids=train_ids, transform=train_tf)
        self.val_set = images(ids=val_ids, transform=eval_tf)
        self.train_set.preload()
        self.val_set.preload()
        self.model = model
        self.ddp_model = self.dist.wrap(model)
        self.proposals = (
            proposal_fn(config.fast_rcnn.proposals_file)
            if config.fast_rcnn.proposals_file
            else None
        )
        self.optimizer = _optimizer(model, config)
        per_rank = math.ceil(len(self.train_set) / self.dist.world_size)
        steps = max(per_rank // config.batch_size, 1)
        self.plan = LrPlan(
            config.schedule,
            steps,
            config.epochs,
            config.warmup_epochs,
            config.step_epochs,
            config.gamma,
            config.decay_rate,
        )
        self.scheduler = build_scheduler(self.optimizer, self.plan)
        self.ema = (
            AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
            if config.ema
            else None
        )
        self.scaler = (
            torch.amp.GradScaler("cuda") if config.amp and self.device.type == "cuda" else None
        )
        self.epoch = 0
        self.best_map = -1.0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0

    def state(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "classes": list(self.voc.classes),
            "dataset_hash": self.voc.content_hash,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_n": self.ema.n_averaged if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "planned_epochs": self.plan.total_epochs,
            "history": self.history,
            "best_map": self.best_map,
            "train_seconds": self.train_seconds,
            "rng": rng_state(),
            "input": self.input_spec,
            "world_size": self.dist.world_size,
        }

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=str(self.device))
        if ckpt["dataset_hash"] != self.voc.content_hash:
            raise ValueError(
                f"--resume {path}: the checkpoint was trained on another dataset "
                f"(hash {ckpt['dataset_hash'][:12]}, this one {self.voc.content_hash[:12]})"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.plan.total_epochs = int(ckpt["planned_epochs"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None and ckpt["ema"] is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
            self.ema.n_averaged.fill_(ckpt["ema_n"])
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt["history"])
        self.best_map = float(ckpt["best_map"])
        self.train_seconds = float(ckpt["train_seconds"])
        set_rng_state(ckpt["rng"])
        logger.info("resumed %s at epoch %d", path, self.epoch)

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def fit(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    run_files: Mapping[str, str] | None = None,
    voc: VocDataset | None = None,
) -> TrainResult:
    """Train ``config.head`` on ``config.data``, writing everything into ``config.out``.

    Files: ``config.yaml``, ``last.pt`` (every epoch), ``best.pt`` (best val VOC area
    mAP@0.5; the last epoch when ``val_split="none"``), ``metrics.csv``, ``curves.png``, ``tensorboard/``.
    ``on_epoch`` (see ``EpochCallback``) sees every epoch's row and may stop the run.
    ``run_files`` are more text files (name -> content) written beside ``config.yaml``
    when the run starts (``prodet train --recipe auto`` writes ``recipe.yaml``). ``voc``
    is ``config.data`` when the caller has loaded it already (read once, not twice).
    """
    run = _Run(config, progress=progress, voc=voc)
    out = run.out
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise ValueError(f"--resume: no {last} to resume from; start without --resume")
        run.restore(last)
    elif last.is_file():
        raise ValueError(
            f"{out} already holds a run ({last}); pass --resume or choose another --out"
        )
    main = run.dist.is_main
    tb = TensorBoardLog(out / "tensorboard") if main else None
    if main:
        atomic_write_bytes(out / "config.yaml", config_to_yaml(config).encode())
        for name, text in (run_files or {}).items():
            atomic_write_bytes(out / name, text.encode())
    budget_s = config.max_minutes * 60.0 if config.max_minutes else None
    stopped = "epochs"
    try:
        while run.epoch < run.plan.total_epochs:
            epoch = run.epoch + 1
            started = time.monotonic()
            # Ranks must stop together, so only a single process stops mid-epoch.
            deadline = (
                started + (budget_s - run.train_seconds)
                if budget_s is not None and run.dist.world_size == 1
                else None
            )
            loader = build_loader(
                run.train_set,
                batch_size=config.batch_size,
                shuffle=True,
                num_workers=config.workers,
                seed=config.seed * 1000 + epoch,
                drop_last=True,
                sampler=run.dist.sampler(run.train_set, config.seed, epoch),
            )
            row: dict[str, Any] = {"epoch": epoch}
            stats = train_one_epoch(
                run.ddp_model,
                loader,
                run.optimizer,
                run.scheduler,
                device=run.device,
                epoch=epoch,
                grad_clip=config.grad_clip,
                scaler=run.scaler,
                ema=run.ema,
                progress=progress and main,
                deadline=deadline,
                proposals=run.proposals,
            )
            row.update({f"train_{k}" if "loss" in k else k: v for k, v in stats.items()})
            validate = len(run.val_set) > 0 and (
                epoch % config.eval_every == 0 or stats["complete"] < 1
            )
            if main and validate:
                evaluation = evaluate_model(
                    run.eval_model(), run.val_set, device=run.device, proposals=run.proposals
                )
                row.update(evaluation.row("val"))
            run.train_seconds += time.monotonic() - started
            row["elapsed_s"] = run.train_seconds
            if budget_s:
                per_epoch = run.train_seconds / epoch
                left = int(max(budget_s - run.train_seconds, 0.0) // per_epoch)
                run.plan.total_epochs = max(epoch, min(config.epochs, epoch + left))
                logger.info("time budget: planning %d epochs", run.plan.total_epochs)
            # Rank 0's view (its validation, its clock) decides for every rank.
            verdict = on_epoch(dict(row)) if main and on_epoch is not None else None
            row, run.train_seconds, run.plan.total_epochs, verdict = run.dist.share(
                (row, run.train_seconds, run.plan.total_epochs, verdict)
            )
            run.epoch = epoch
            run.history.append(row)
            # Without a validation split the latest epoch is the best one known.
            improved = len(run.val_set) == 0 or row.get("val_map_area", -1.0) > run.best_map
            if improved and "val_map_area" in row:
                run.best_map = row["val_map_area"]
            if main:
                state = run.state()
                save_checkpoint(state, last)
                if improved:
                    save_checkpoint(state, out / "best.pt")
                write_metrics_csv(out / "metrics.csv", run.history)
                if tb is not None:  # always, on the main rank
                    tb.log(epoch, row)
                logger.info(
                    "epoch %d: loss %.4f, val mAP@0.5 %s, %.1f img/s",
                    epoch,
                    row["train_loss"],
                    f"{row['val_map_area']:.4f}" if "val_map_area" in row else "-",
                    row["images_per_s"],
                )
            if verdict:
                stopped = verdict
                break
            if budget_s and run.train_seconds >= budget_s:
                stopped = "time budget"
                break
            if config.patience and epochs_without_improvement(run.history) >= config.patience:
                stopped = "early stopping"
                break
    finally:
        if tb is not None:
            tb.close()
        run.dist.cleanup()
    if main and run.history:
        plot_curves(out / "curves.png", run.history)
    return TrainResult(out, run.best_map, run.epoch, run.history, stopped)
