"""The rules of the automatic recipe (``detection.recipe``), one small function per concern.

Each rule reads the training split's statistics (``DatasetStats``) and the settings so
far (``Settings``: the user's value for a key they set, else what an earlier rule chose)
and records its ``Choice`` with the reason: the statistic, the threshold and the measured
run behind it. The thresholds are the constants below, each with its argument; the runs
are in ``BENCHMARKS.md`` ("Accuracy at a fixed CPU budget", "The automatic recipe").

Object size is ``sqrt(box area / image area)``, the box's side as a fraction of the image
side; the default ``stretch`` resize keeps it, so an object of relative size ``r`` spans
about ``r * size`` pixels of the network input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prodet.detection.config import NO_VALIDATION, TrainConfig
from prodet.detection.dataset_stats import DatasetStats
from prodet.detection.ssd import default_scales

# Below this many training images nothing can be held out and a detector learns little:
# no validation, one batch of every image, and a warning.
MIN_TRAIN_IMAGES = 10
# A carved validation split needs enough images for its mAP to rank checkpoints: 15% of
# 150 is 22 images (about 50 objects at product photos' 2 per image). Commodity's 11
# validation images ranked checkpoints by noise (the same recipe scored 0.574 and 0.418
# test mAP), and training on all 71 images with the last weights scored 0.49-0.67.
MIN_IMAGES_TO_CARVE = 150
# The input side makes the smallest tenth of objects at least this many pixels across:
# 1.5x COCO's 32-px small-object boundary, where detectors lose most of their AP.
SMALL_OBJECT_PX = 48
SMALL_OBJECT_QUANTILE = 0.10
SIZE_STEP = 32  # the stride-32 map needs a side divisible by 32
# 224: the backbones' ImageNet input side; 384: 1.44x the pixels of 320 px, whose SSD
# with a feature pyramid already ran at only 5 img/s on the 2-core benchmark CPU.
MIN_SIZE, MAX_SIZE = 224, 384
# The feature pyramid pays once one object in twenty (or a class's typical object) is too
# small for the second SSD map's default boxes: those objects rest on the stride-8 map
# alone, 40 channels straight out of an early EfficientNet stage.
FPN_SMALL_FRACTION = 0.05
FPN_CHANNELS_MOBILE = 96  # measured on efficientnet_lite0 (commodity 0.49 -> 0.58 test mAP)
FPN_CHANNELS_WIDE = 256  # torchvision's FPN width, for resnet50 and vgg16 (not measured)
MOBILE_BACKBONES = ("efficientnet_lite0", "mobilenet_v3_large")
# The EMA averages over the last tenth of training: 1 / (1 - decay) steps. The measured
# decays were 8-16% of their runs' steps (groceries 0.995 over ~2,000 steps; commodity
# 0.99 over 630-1,300 steps).
EMA_FRACTION = 0.10
MIN_EMA_STEPS = 250  # a tenth of fewer steps (< 25) averages too little to matter
MAX_EMA_DECAY = 0.9999
# Without a time budget a run gets at least this many optimiser steps (at least the
# default 40 epochs, at most MAX_EPOCHS): groceries rose from 0.229 (1,100 steps) to
# 0.277 (2,000 steps); commodity peaked after 530-630 steps.
STEP_TARGET = 1000
MAX_EPOCHS = 300
# With --max-minutes and no --epochs the budget ends the run, or this many passes over the
# training images, whichever comes first. On small sets a fast CPU otherwise spends the
# budget memorising: commodity SSD (71 images, 15 minutes, seeds 0-2) gave test mAP 0.580,
# 0.572, 0.521 after 193-200 epochs (loss 0.045) and 0.557, 0.726, 0.628 capped at 80 (in
# 6 minutes); the hand-found 67-79-epoch runs gave 0.598-0.674. Larger sets reach the
# budget first (groceries25: 23-47 epochs in 8 minutes), so the cap leaves them alone.
BUDGET_EPOCHS = 80
REFERENCE_BATCH, REFERENCE_LR = 8, 0.01  # the measured SGD setting; linear scaling off it
PRETRAINED_FREEZE = 2  # Detectron2's FREEZE_AT: stem and the stride-4 stage keep ImageNet's
# Training images per second at 224 px on the 2-core benchmark CPU (the 15-minute runs of
# BENCHMARKS.md, validation included), scaled by input area; the pyramid costs 14%
# (commodity SSD at 256 px: 116 epochs with it, 135 without, in 15 minutes).
CPU_RATE_224 = {"ssd": 16.0, "fast_rcnn": 10.0}
FPN_RATE_FACTOR = 0.86
MAX_WORKERS = 4


@dataclass(frozen=True)
class Choice:
    """One automatic setting: the dotted config ``key``, its ``value`` and why."""

    key: str
    value: Any
    reason: str


@dataclass(frozen=True)
class Budget:
    """What the user gave of the run's length, and the machine's cores.

    Attributes:
        max_minutes: ``--max-minutes`` (None: no time budget).
        epochs: ``--epochs`` when the user set it (None: the recipe chooses).
        cpus: CPU cores for the data loader's workers.
    """

    max_minutes: float | None
    epochs: int | None
    cpus: int


def config_value(config: TrainConfig, key: str) -> Any:
    """The value of dotted ``key`` (``ssd.fpn_channels``) in ``config``."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


class Settings:
    """The values the rules see: the user's for explicit keys, else the recipe's so far."""

    def __init__(self, config: TrainConfig, explicit: frozenset[str]) -> None:
        self.config = config
        self.explicit = explicit
        self.choices: list[Choice] = []

    def get(self, key: str) -> Any:
        for choice in self.choices:
            if choice.key == key:
                return choice.value
        return config_value(self.config, key)

    def choose(self, key: str, value: Any, reason: str) -> None:
        if key not in self.explicit:
            self.choices.append(Choice(key, value, reason))


def choose_validation(s: Settings, stats: DatasetStats) -> int:
    """Choose ``val_split``; return the number of images training will see."""
    n = stats.train_images
    carved = min(n - 1, max(1, round(s.config.val_fraction * n))) if n >= 2 else 0
    if stats.val_images:
        s.choose(
            "val_split",
            s.config.val_split,
            f"the dataset has a separate {s.config.val_split!r} split ({stats.val_images} images)",
        )
    elif s.config.patience and n >= 2:
        s.choose(
            "val_split",
            "val",
            f"patience {s.config.patience} stops on validation "
            f"mAP: {carved} of {n} images carved out",
        )
    elif n < MIN_TRAIN_IMAGES:
        s.choose(
            "val_split",
            NO_VALIDATION,
            f"{n} training images < {MIN_TRAIN_IMAGES}: "
            "too few to hold any out; trains on all, best.pt is the last epoch",
        )
    elif n < MIN_IMAGES_TO_CARVE:
        s.choose(
            "val_split",
            NO_VALIDATION,
            f"{n} training images < {MIN_IMAGES_TO_CARVE}: a validation split of {carved} "
            "images would rank checkpoints by noise; "
            "trains on all, best.pt is the last epoch",
        )
    else:
        s.choose(
            "val_split",
            "val",
            f"{n} training images >= {MIN_IMAGES_TO_CARVE}: {carved} carved out to pick best.pt",
        )
    # resolve_splits: "none" trains on everything, an existing other split is used as it
    # is, anything else is carved out of the training split.
    if s.get("val_split") == NO_VALIDATION or stats.val_images:
        return n
    return n - carved


def choose_batch_and_lr(s: Settings, fit_images: int) -> int:
    """Choose ``batch_size`` and ``lr``; return the optimiser steps per epoch."""
    default = s.config.batch_size
    if "batch_size" in s.explicit and default > fit_images:
        raise ValueError(
            f"batch_size {default} > the {fit_images} training images: every batch would be "
            f"dropped; use --batch-size {fit_images} or less"
        )
    if fit_images < default:
        s.choose(
            "batch_size",
            fit_images,
            f"{fit_images} training images < batch "
            f"{default}: one batch of all (the last partial batch is dropped)",
        )
    else:
        s.choose(
            "batch_size",
            default,
            f"{fit_images} training images: {fit_images // default} steps per epoch",
        )
    batch = int(s.get("batch_size"))
    lr = round(REFERENCE_LR * batch / REFERENCE_BATCH, 6)
    s.choose(
        "lr",
        lr,
        f"batch {batch}: SGD lr {REFERENCE_LR} measured at batch "
        f"{REFERENCE_BATCH}, scaled linearly",
    )
    return max(fit_images // batch, 1)


def choose_schedule(s: Settings) -> None:
    """Choose ``schedule``: warmup then cosine, the schedule of every measured run."""
    s.choose(
        "schedule",
        "cosine",
        "warmup then cosine over the run (fitted to --max-minutes when given): every "
        "measured run used it",
    )


def choose_input_size(s: Settings, stats: DatasetStats) -> None:
    """Choose ``size``: the smallest tenth of objects at ``SMALL_OBJECT_PX``, no upsampling."""
    small = stats.size_quantile(SMALL_OBJECT_QUANTILE)
    wanted = SIZE_STEP * round(SMALL_OBJECT_PX / max(small, 1e-6) / SIZE_STEP)
    native = SIZE_STEP * math.ceil(stats.image_side_median / SIZE_STEP)
    size = int(min(max(min(wanted, native), MIN_SIZE), MAX_SIZE))
    s.choose(
        "size",
        size,
        f"10% of objects are under {small:.3f} of the image side: {wanted} px puts them at "
        f"{SMALL_OBJECT_PX} px; median image side {stats.image_side_median:.0f} px "
        f"(no upsampling past {native}); bounds {MIN_SIZE}-{MAX_SIZE}",
    )


def second_map_floor(config: TrainConfig) -> float:
    """Relative size below which an object overlaps no default box of SSD's second map
    with IoU 0.5 (a centred square of side ``a`` in one of side ``b`` has IoU
    ``(a / b)**2``, so ``a >= b / sqrt(2)``)."""
    n_maps = 3 + len(config.ssd.extra_channels)  # stride-8/16/32 maps, then the extras
    scales = default_scales(n_maps, config.ssd.min_scale, config.ssd.max_scale)
    return scales[1] / math.sqrt(2.0)


def choose_feature_pyramid(s: Settings, stats: DatasetStats) -> None:
    """Choose ``ssd.fpn_channels`` (SSD only) from the share of objects below the second map."""
    if s.get("head") != "ssd":
        return
    floor = second_map_floor(s.config)
    share = stats.fraction_below(floor)
    small_classes = [
        name
        for name, median in zip(stats.classes, stats.class_size_medians, strict=True)
        if median < floor
    ]
    why = (
        f"{share:.1%} of objects are under {floor:.3f} of the side (only the stride-8 map "
        f"fits them; threshold {FPN_SMALL_FRACTION:.0%})"
    )
    if small_classes:
        why += f"; classes whose median object is smaller: {', '.join(small_classes)}"
    if share >= FPN_SMALL_FRACTION or small_classes:
        mobile = s.get("backbone") in MOBILE_BACKBONES
        channels = FPN_CHANNELS_MOBILE if mobile else FPN_CHANNELS_WIDE
        s.choose("ssd.fpn_channels", channels, why + "; so a feature pyramid")
    else:
        s.choose("ssd.fpn_channels", 0, why + "; no pyramid needed")


def choose_augmentation(s: Settings) -> None:
    """Choose ``preset`` and ``mosaic``: the light preset, no mosaic (measured)."""
    s.choose(
        "preset",
        "light",
        "flip and colour jitter: the ssd preset's crops did not converge in CPU budgets "
        "(commodity loss 12.4 -> 14.9 in 25 epochs)",
    )
    s.choose(
        "mosaic",
        0.0,
        "mosaic shrinks objects: it lowered commodity test mAP (0.574 -> 0.507, and "
        "0.584 -> 0.518 with the pyramid)",
    )


def choose_freezing(s: Settings) -> None:
    """Choose ``freeze``: two stages with pretrained weights, none without."""
    if s.get("backbone_weights") == "none":
        s.choose("freeze", 0, "backbone_weights none: random early stages must train")
    else:
        s.choose(
            "freeze",
            PRETRAINED_FREEZE,
            "pretrained backbone: stem and stride-4 stage "
            "keep ImageNet's features (Detectron2's FREEZE_AT=2; all benchmark runs)",
        )


def estimated_images_per_second(head: str, size: int, fpn: bool) -> float:
    """Training images per second on the 2-core benchmark CPU (see ``CPU_RATE_224``)."""
    rate = CPU_RATE_224[head] * (224.0 / size) ** 2
    return rate * FPN_RATE_FACTOR if fpn else rate


def choose_length(s: Settings, budget: Budget, steps_per_epoch: int) -> float:
    """Choose ``epochs``; return the expected number of optimiser steps."""
    if budget.epochs is None and budget.max_minutes:
        s.choose(
            "epochs",
            BUDGET_EPOCHS,
            f"--max-minutes {budget.max_minutes:g} ends the run (the cosine is fitted to it), "
            f"or {BUDGET_EPOCHS} passes over the training images if sooner: small sets "
            "memorise past that (commodity: median test mAP 0.572 after ~200 epochs, 0.628 "
            f"at {BUDGET_EPOCHS})",
        )
    elif budget.epochs is None:
        epochs = min(max(s.config.epochs, math.ceil(STEP_TARGET / steps_per_epoch)), MAX_EPOCHS)
        s.choose(
            "epochs",
            epochs,
            f"{steps_per_epoch} steps per epoch: at least {STEP_TARGET} steps in all "
            f"(at least {s.config.epochs}, at most {MAX_EPOCHS} epochs)",
        )
    total = float(int(s.get("epochs")) * steps_per_epoch)
    if budget.max_minutes:
        fpn = s.get("head") == "ssd" and int(s.get("ssd.fpn_channels")) > 0
        rate = estimated_images_per_second(str(s.get("head")), int(s.get("size")), fpn)
        total = min(total, budget.max_minutes * 60.0 * rate / int(s.get("batch_size")))
    return total


def choose_ema(s: Settings, total_steps: float) -> None:
    """Choose ``ema`` and ``ema_decay`` from the expected number of optimiser steps."""
    if "ema_decay" in s.explicit and "ema" not in s.explicit:
        s.choose("ema", True, "you set ema_decay")
    elif total_steps < MIN_EMA_STEPS:
        s.choose(
            "ema",
            False,
            f"about {total_steps:.0f} steps expected < {MIN_EMA_STEPS}: "
            "too short for an average to help",
        )
    else:
        s.choose(
            "ema",
            True,
            f"about {total_steps:.0f} steps expected >= {MIN_EMA_STEPS}: "
            "EMA weights scored best on both benchmark sets",
        )
    if not s.get("ema"):
        return
    horizon = max(EMA_FRACTION * total_steps, MIN_EMA_STEPS * EMA_FRACTION)
    decay = min(round(1.0 - 1.0 / horizon, 4), MAX_EMA_DECAY)
    s.choose(
        "ema_decay",
        decay,
        f"averages the last {EMA_FRACTION:.0%} of about "
        f"{total_steps:.0f} steps ({horizon:.0f}; measured: 0.99 for commodity, "
        "0.995 for groceries25)",
    )


def choose_workers(s: Settings, budget: Budget) -> None:
    """Choose ``workers``: every core but the training step's, at most ``MAX_WORKERS``."""
    s.choose(
        "workers",
        min(max(budget.cpus - 1, 0), MAX_WORKERS),
        f"{budget.cpus} CPU cores: one stays with the training step (max {MAX_WORKERS}); "
        "the benchmarks used 1 loader worker on 2 cores",
    )
