"""``prodet train --recipe auto``: training settings chosen from the dataset and the budget.

Before training, ``dataset_stats`` (``detection.dataset_stats``) measures the training
split from the record table alone (no image is decoded: sizes and boxes are in the
records), and ``auto_recipe``
turns those statistics and the budget into config values, each a ``Choice`` with the
reason that cites the statistic and the threshold behind it. The rules are small
functions below, one per concern; their thresholds are constants here, each with its
argument, and the measured runs behind them are in ``BENCHMARKS.md`` ("Accuracy at a
fixed CPU budget", subsection "The automatic recipe").

Precedence: dataclass defaults < the recipe's choices < ``--config`` file < flags and
``--set``. A key the user set is never chosen; a rule that depends on it reads the
user's value (a ``--batch-size 16`` gives the learning rate of batch 16).

Object size is measured as ``sqrt(box area / image area)``: the box's side as a fraction
of the image side. The default ``stretch`` resize keeps that fraction, so an object of
relative size ``r`` spans about ``r * size`` pixels of the network input.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import yaml  # no types-PyYAML stubs in the environment

from prodet.annotations.schema import VocDataset
from prodet.detection.config import NO_VALIDATION, TrainConfig
from prodet.detection.dataset_stats import DatasetStats, dataset_stats
from prodet.detection.ssd import default_scales

logger = logging.getLogger(__name__)

# The keys the recipe may choose, in the order it prints them.
RECIPE_KEYS = (
    "train_split",
    "val_split",
    "batch_size",
    "lr",
    "schedule",
    "size",
    "ssd.fpn_channels",
    "preset",
    "mosaic",
    "freeze",
    "epochs",
    "ema",
    "ema_decay",
    "workers",
)

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


class _Settings:
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


def auto_recipe(
    stats: DatasetStats, budget: Budget, config: TrainConfig, explicit: frozenset[str]
) -> list[Choice]:
    """The automatic settings for the keys in ``RECIPE_KEYS`` the user did not set.

    Args:
        stats: the training split's statistics (``dataset_stats``).
        budget: the run's length as the user gave it.
        config: the user's configuration (defaults plus every key they set); the rules
            read the user's values of the keys in ``explicit``.
        explicit: dotted keys the user set (flags, ``--set``, ``--config``); they are
            never chosen.

    Raises:
        ValueError: the training split holds no image or no object.
    """
    if stats.train_images == 0:
        raise ValueError(
            f"train_split {stats.train_split!r} has no images: nothing to train on "
            "(check ImageSets/Main or choose --set train_split=...)"
        )
    if stats.objects == 0:
        raise ValueError(
            f"train_split {stats.train_split!r} holds no annotated object: a detector "
            "cannot learn from it; annotate some boxes first"
        )
    if stats.train_images < MIN_TRAIN_IMAGES:
        logger.warning(
            "only %d training images (< %d): expect a weak detector; add images",
            stats.train_images,
            MIN_TRAIN_IMAGES,
        )
    s = _Settings(config, explicit)
    fit_images = _validation(s, stats)
    steps = _batch_and_lr(s, fit_images)
    s.choose(
        "schedule",
        "cosine",
        "warmup then cosine over the run (fitted to --max-minutes when given): every "
        "measured run used it",
    )
    _input_size(s, stats)
    _feature_pyramid(s, stats)
    _augmentation(s)
    _freezing(s)
    total_steps = _length(s, budget, steps)
    _ema(s, total_steps)
    workers = min(max(budget.cpus - 1, 0), MAX_WORKERS)
    s.choose(
        "workers",
        workers,
        f"{budget.cpus} CPU cores: one stays with the training step (max {MAX_WORKERS}); "
        "the benchmarks used 1 loader worker on 2 cores",
    )
    for choice in s.choices:
        logger.debug("recipe: %s = %r (%s)", choice.key, choice.value, choice.reason)
    return s.choices


def _validation(s: _Settings, stats: DatasetStats) -> int:
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


def _batch_and_lr(s: _Settings, fit_images: int) -> int:
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


def _input_size(s: _Settings, stats: DatasetStats) -> None:
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


def _feature_pyramid(s: _Settings, stats: DatasetStats) -> None:
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


def _augmentation(s: _Settings) -> None:
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


def _freezing(s: _Settings) -> None:
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


def _length(s: _Settings, budget: Budget, steps_per_epoch: int) -> float:
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


def _ema(s: _Settings, total_steps: float) -> None:
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


@dataclass(frozen=True)
class Recipe:
    """The automatic recipe of one run: statistics, choices, and the keys the user kept."""

    stats: DatasetStats
    choices: tuple[Choice, ...]
    kept: dict[str, Any]

    def overrides(self) -> dict[str, Any]:
        """The choices as dotted config keys (the base layer of ``load_config``)."""
        return {c.key: c.value for c in self.choices}

    def table(self) -> str:
        """One line per recipe key: value and reason, or the user's value."""
        s = self.stats
        lines = [
            f"recipe auto ({s.train_split}: {s.train_images} images, {len(s.classes)} "
            f"classes, {s.objects} objects); your flags, --set and --config keys win, "
            "--recipe none gives the plain defaults:"
        ]
        by_key = {c.key: c for c in self.choices}
        for key in RECIPE_KEYS:
            if key in by_key:
                lines.append(f"  {key:<17} {by_key[key].value!s:<8} {by_key[key].reason}")
            elif key in self.kept:
                lines.append(f"  {key:<17} {self.kept[key]!s:<8} yours")
        return "\n".join(lines)

    def to_yaml(self) -> str:
        """``recipe.yaml`` of the run: what was measured, chosen and why, and what you set."""
        document = {
            "recipe": "auto",
            "statistics": self.stats.summary(),
            "chosen": {c.key: {"value": c.value, "reason": c.reason} for c in self.choices},
            "yours": dict(self.kept),
        }
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


TRAIN_SPLIT_NAMES = ("trainval", "train")
VAL_SPLIT_NAMES = ("val", "valid", "validation")


def choose_splits(voc: VocDataset, config: TrainConfig, explicit: frozenset[str]) -> list[Choice]:
    """Choose ``train_split`` among the dataset's splits (the one the recipe measures).

    The configured split (``trainval``) when it exists, else ``train``. When a validation
    split lies inside it, as VOC's own ``val`` lies inside ``trainval``, training moves to a
    ``train`` split disjoint from it: validating on training images ranks nothing. Under
    another name (``valid``, ``validation``) the validation split is found too.

    Raises:
        ValueError: no training split is found (the message lists the dataset's splits).
    """
    splits = {name: set(ids) for name, ids in voc.splits.items()}
    known = ", ".join(sorted(splits)) or "none"
    choices: list[Choice] = []
    val = config.val_split
    if "val_split" not in explicit and val not in splits:
        val = next((n for n in VAL_SPLIT_NAMES if n in splits), val)
        if val != config.val_split:
            choices.append(Choice("val_split", val, f"the dataset's validation split ({known})"))
    if "train_split" in explicit:
        return choices
    train = config.train_split
    if train not in splits:
        train = next((n for n in TRAIN_SPLIT_NAMES if n in splits), "")
        if not train:
            raise ValueError(
                f"no training split: the dataset has {known}; name one with "
                "--set train_split=NAME (VOC: ImageSets/Main/NAME.txt)"
            )
        choices.append(Choice("train_split", train, f"no {config.train_split!r} split ({known})"))
    held = splits.get(val, set())
    if held & splits[train] and "train" in splits and not held & splits["train"]:
        choices = [c for c in choices if c.key != "train_split"]
        choices.append(
            Choice(
                "train_split",
                "train",
                f"{val!r} lies inside {train!r} (VOC's layout): training on 'train' "
                f"({len(splits['train'])} images) keeps validation images unseen",
            )
        )
    return choices


def build_recipe(
    voc: VocDataset, config: TrainConfig, explicit: frozenset[str], *, cpus: int
) -> Recipe:
    """Measure ``voc`` and choose every recipe key the user did not set.

    ``config`` is the user's configuration (defaults plus ``explicit`` keys).
    """
    split_choices = choose_splits(voc, config, explicit)
    config = dataclasses.replace(config, **{c.key: c.value for c in split_choices})
    stats = dataset_stats(voc, train_split=config.train_split, val_split=config.val_split)
    budget = Budget(
        max_minutes=config.max_minutes,
        epochs=config.epochs if "epochs" in explicit else None,
        cpus=cpus,
    )
    chosen = auto_recipe(stats, budget, config, explicit)
    keys = {c.key for c in chosen}  # the validation rule restates val_split with its reason
    choices = [c for c in split_choices if c.key not in keys] + chosen
    kept = {key: config_value(config, key) for key in RECIPE_KEYS if key in explicit}
    logger.info("recipe auto: %d settings chosen, %d kept from you", len(choices), len(kept))
    return Recipe(stats, tuple(choices), kept)
