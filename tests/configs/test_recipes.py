"""Recipes are files: every configs/*.yaml is a valid TrainConfig, and the files the
Makefile, the training benchmark and the demo name exist and say what they should."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from prodet.configs import CONFIGS, recipe_names, recipe_path, tune_space_path
from prodet.demo import TRAIN_RECIPE
from prodet.detection.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))


def test_the_installed_package_reads_the_repository_folder():
    assert (REPO / "configs").resolve() == CONFIGS
    assert recipe_names() == sorted(path.stem for path in RECIPES)
    assert tune_space_path("fast_rcnn") == CONFIGS / "tune" / "fast-rcnn.yaml"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_is_a_valid_train_config(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)
    assert config.data == ""  # the data always comes from --data
    assert config.head == ("fast_rcnn" if "fast-rcnn" in path.stem else "ssd")


def test_data_comes_from_the_command_line_and_flags_override_the_recipe():
    config = load_config(recipe_path("commodity-ssd-fpn"), {"data": "commodity.pkl", "seed": 2})
    assert (config.data, config.seed) == ("commodity.pkl", 2)
    # the benchmark's best commodity SSD (BENCHMARKS.md): all of trainval, a pyramid, 320 px
    assert (config.val_split, config.ssd.fpn_channels, config.size) == ("none", 96, 320)
    assert (config.ema, config.ema_decay, config.preset, config.freeze) == (True, 0.99, "light", 2)


def test_demo_recipe_with_the_demo_flags():
    config = load_config(
        recipe_path(TRAIN_RECIPE),
        {"data": "shelf.pkl", "out": "run", "max_minutes": 7.0, "seed": 0},
    )
    assert (config.head, config.size, config.batch_size, config.epochs) == ("ssd", 320, 8, 60)
    assert (config.lr, config.freeze, config.workers, config.preset) == (0.01, 2, 1, "ssd")


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"no recipe 'comodity-ssd'.*commodity-ssd, commodity-ssd-fpn"
    ):
        recipe_path("comodity-ssd")


def test_files_named_by_the_makefile_and_readme_exist():
    named = set()
    for doc in ("Makefile", "README.md"):
        named |= set(re.findall(r"configs/[a-z0-9][a-z0-9./_-]*\.yaml", (REPO / doc).read_text()))
    assert "configs/commodity-ssd-fpn.yaml" in named
    missing = sorted(name for name in named if not (REPO / name).is_file())
    assert not missing


@pytest.mark.parametrize("dataset", ["groceries25_voc", "commodity_voc"])
@pytest.mark.parametrize("head", ["ssd", "fast_rcnn"])
def test_the_training_benchmark_finds_a_recipe_per_dataset_and_head(dataset, head):
    # bench/train_budget.py's default: configs/DATASET-HEAD.yaml
    name = f"{dataset.removesuffix('_voc')}-{head.replace('_', '-')}"
    assert load_config(recipe_path(name)).head == head


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_sets_the_keys_the_automatic_recipe_chooses(path):
    """`prodet train --config` fills the keys a file leaves out with `--recipe auto`'s
    choices; a named recipe must train the same with or without it."""
    recipe = pytest.importorskip("prodet.detection.recipe")
    tree = yaml.safe_load(path.read_text())
    keys = {f"{k}.{sub}" for k, v in tree.items() if isinstance(v, dict) for sub in v} | set(tree)
    assert not [key for key in recipe.RECIPE_KEYS if key not in keys]
