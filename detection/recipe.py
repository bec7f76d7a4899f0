"""``prodet train --recipe auto``: training settings chosen from the dataset and the budget.

Before training, ``dataset_stats`` (``detection.dataset_stats``) measures the training
split from the record table alone (no image is decoded: sizes and boxes are in the
records), and ``auto_recipe`` turns those statistics and the budget into config values,
each a ``Choice`` with the reason that cites the statistic and the threshold behind it.
The rules, one small function per concern, and their thresholds live in
``detection.recipe_rules``; the measured runs behind them are in ``BENCHMARKS.md``
("Accuracy at a fixed CPU budget", subsection "The automatic recipe"). ``build_recipe``
adds the choice of splits and returns the run's ``Recipe`` (its printed table and
``recipe.yaml``).

Precedence: dataclass defaults < the recipe's choices < ``--config`` file < flags and
``--set``. A key the user set is never chosen; a rule that depends on it reads the
user's value (a ``--batch-size 16`` gives the learning rate of batch 16).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import yaml  # no types-PyYAML stubs in the environment

from prodet.annotations.schema import VocDataset
from prodet.detection.config import TrainConfig
from prodet.detection.dataset_stats import DatasetStats, dataset_stats
from prodet.detection.recipe_rules import (
    MIN_TRAIN_IMAGES,
    Budget,
    Choice,
    Settings,
    choose_augmentation,
    choose_batch_and_lr,
    choose_ema,
    choose_feature_pyramid,
    choose_freezing,
    choose_input_size,
    choose_length,
    choose_schedule,
    choose_validation,
    choose_workers,
    config_value,
)

__all__ = [
    "RECIPE_KEYS",
    "Budget",
    "Choice",
    "Recipe",
    "auto_recipe",
    "build_recipe",
    "choose_splits",
    "config_value",
]

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
    s = Settings(config, explicit)
    fit_images = choose_validation(s, stats)
    steps = choose_batch_and_lr(s, fit_images)
    choose_schedule(s)
    choose_input_size(s, stats)
    choose_feature_pyramid(s, stats)
    choose_augmentation(s)
    choose_freezing(s)
    total_steps = choose_length(s, budget, steps)
    choose_ema(s, total_steps)
    choose_workers(s, budget)
    for choice in s.choices:
        logger.debug("recipe: %s = %r (%s)", choice.key, choice.value, choice.reason)
    return s.choices


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
