"""``--recipe auto``: statistics, each rule's choice computed by hand, precedence, the CLI."""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

from prodet.annotations.image_record import ImageRecord
from prodet.annotations.schema import FORMAT_VERSION, VocDataset, compute_content_hash
from prodet.commands import main as prodet
from prodet.detection.config import (
    TrainConfig,
    config_to_yaml,
    explicit_keys,
    load_config,
    yaml_keys,
)
from prodet.detection.dataset_stats import DatasetStats, dataset_stats
from prodet.detection.recipe import auto_recipe, choose_splits
from prodet.detection.recipe_rules import (
    Budget,
    Choice,
    estimated_images_per_second,
    second_map_floor,
)
from tests.conftest import shared_path
from tests.detection.test_trainer import REPO, SIZE, make_tiny_dataset

NO_BUDGET = Budget(max_minutes=None, epochs=None, cpus=2)


def synthetic_stats(
    train_images: int,
    sizes: list[float],
    *,
    side: float = 224.0,
    val_images: int = 0,
    classes: tuple[str, ...] = ("box",),
    class_medians: tuple[float, ...] | None = None,
) -> DatasetStats:
    ordered = np.sort(np.asarray(sizes, dtype=np.float64))
    return DatasetStats(
        train_split="trainval",
        split_images={"trainval": train_images, "test": 10},
        val_images=val_images,
        classes=classes,
        objects_per_class=(len(sizes),) + (0,) * (len(classes) - 1),
        images_without_objects=0,
        image_side_median=side,
        aspect_ratios=(1.0, 1.0, 1.0),
        object_sizes=ordered,
        class_size_medians=class_medians
        or (float(np.median(ordered)) if len(ordered) else math.nan,),
    )


def chosen(choices: list[Choice]) -> dict[str, object]:
    values = {c.key: c.value for c in choices}
    assert len(values) == len(choices), "a key chosen twice"
    return values


# Commodity-like: 71 images of about 480 px, 11 of 100 objects at 0.15 of the side.
SMALL_OBJECTS = [0.15] * 11 + [0.4] * 89


def test_small_objects_on_a_small_set():
    values = chosen(auto_recipe(synthetic_stats(71, SMALL_OBJECTS, side=480), NO_BUDGET,
                                TrainConfig(), frozenset()))  # fmt: skip
    # 71 < 150: no validation; 71 // 8 = 8 steps; 48 px / 0.15 = 320 px; 11% < 0.167 of
    # the side: a pyramid; ceil(1000 / 8) = 125 epochs; 1000 steps: EMA over 100, 0.99.
    assert values == {
        "val_split": "none",
        "batch_size": 8,
        "lr": 0.01,
        "schedule": "cosine",
        "size": 320,
        "ssd.fpn_channels": 96,
        "preset": "light",
        "mosaic": 0.0,
        "freeze": 2,
        "epochs": 125,
        "ema": True,
        "ema_decay": 0.99,
        "workers": 1,
    }


def test_large_objects_on_a_larger_set_with_and_without_a_budget():
    stats = synthetic_stats(400, [0.4] * 100, side=224)
    values = chosen(auto_recipe(stats, NO_BUDGET, TrainConfig(), frozenset()))
    # 60 of 400 carved: 340 // 8 = 42 steps; 48 / 0.4 = 128 px, raised to 224; no small
    # objects; max(40, ceil(1000 / 42)) = 40 epochs = 1680 steps: decay 1 - 1/168.
    assert (values["val_split"], values["size"], values["ssd.fpn_channels"]) == ("val", 224, 0)
    assert (values["epochs"], values["ema_decay"]) == (40, 0.994)
    budget = Budget(max_minutes=15.0, epochs=None, cpus=2)
    values = chosen(auto_recipe(stats, budget, TrainConfig(), frozenset()))
    # 16 img/s at 224 px for 900 s = 1800 steps of 8 (the budget ends the run before 80
    # epochs = 3360 steps): decay 1 - 1/180.
    assert (values["epochs"], values["ema_decay"]) == (80, 0.9944)


def test_budget_steps_scale_with_input_area_and_the_pyramid():
    assert estimated_images_per_second("ssd", 224, False) == 16.0
    rate = estimated_images_per_second("ssd", 320, True)
    assert rate == pytest.approx(16.0 * (224 / 320) ** 2 * 0.86)
    budget = Budget(max_minutes=15.0, epochs=None, cpus=2)
    # 400 images (60 carved for validation): 42 steps an epoch, so the budget binds first.
    larger = synthetic_stats(400, SMALL_OBJECTS, side=480)
    values = chosen(auto_recipe(larger, budget, TrainConfig(), frozenset()))
    steps = 900 * rate / 8  # 758.6 in the budget
    assert values["ema_decay"] == round(1 - 1 / (0.1 * steps), 4) == 0.9868
    stats = synthetic_stats(71, SMALL_OBJECTS, side=480)
    values = chosen(auto_recipe(stats, budget, TrainConfig(), frozenset()))
    # 71 images (no validation carved), batch 8: 8 steps an epoch, so 80 epochs = 640
    # steps come before the budget's 758.6: the decay averages 64 of them.
    assert (values["epochs"], values["ema_decay"]) == (80, round(1 - 1 / 64, 4))
    short = Budget(max_minutes=2.0, epochs=None, cpus=2)  # about 100 steps: no EMA
    values = chosen(auto_recipe(stats, short, TrainConfig(), frozenset()))
    assert values["ema"] is False and "ema_decay" not in values


def test_fast_rcnn_gets_no_pyramid_key_and_other_backbones_a_wider_one():
    stats = synthetic_stats(71, SMALL_OBJECTS, side=480)
    fast = chosen(auto_recipe(stats, NO_BUDGET, TrainConfig(head="fast_rcnn"), frozenset()))
    assert "ssd.fpn_channels" not in fast and fast["size"] == 320
    wide = chosen(auto_recipe(stats, NO_BUDGET, TrainConfig(backbone="resnet50"), frozenset()))
    assert wide["ssd.fpn_channels"] == 256


def test_a_class_of_small_objects_alone_asks_for_the_pyramid():
    floor = second_map_floor(TrainConfig())
    assert floor == pytest.approx((0.07 + (0.9 - 0.07) / 5) / math.sqrt(2))  # 0.1669
    stats = synthetic_stats(
        400, [0.4] * 196 + [0.1] * 4, classes=("big", "small"), class_medians=(0.4, 0.1)
    )
    choices = auto_recipe(stats, NO_BUDGET, TrainConfig(), frozenset())
    pyramid = next(c for c in choices if c.key == "ssd.fpn_channels")
    assert pyramid.value == 96 and "2.0% of objects" in pyramid.reason and "small" in pyramid.reason


def test_explicit_keys_are_never_chosen_and_rules_read_their_values():
    config = TrainConfig(size=512, batch_size=16, ema=False)
    explicit = frozenset({"size", "batch_size", "ema", "ssd.fpn_channels"})
    values = chosen(auto_recipe(synthetic_stats(71, SMALL_OBJECTS), NO_BUDGET, config, explicit))
    assert not explicit & set(values)
    # The user's batch 16: lr 0.01 * 16 / 8, 71 // 16 = 4 steps, ceil(1000 / 4) epochs;
    # the user's ema off: no decay chosen.
    assert (values["lr"], values["epochs"]) == (0.02, 250) and "ema_decay" not in values
    decay_only = auto_recipe(
        synthetic_stats(71, SMALL_OBJECTS), NO_BUDGET, TrainConfig(), frozenset({"ema_decay"})
    )
    assert chosen(decay_only)["ema"] is True and "ema_decay" not in chosen(decay_only)


def test_validation_policy():
    stats = synthetic_stats(71, SMALL_OBJECTS, val_images=30)
    values = chosen(auto_recipe(stats, NO_BUDGET, TrainConfig(), frozenset()))
    assert values["val_split"] == "val" and values["epochs"] == 125  # 71 // 8 steps: no carving
    patient = chosen(auto_recipe(synthetic_stats(71, SMALL_OBJECTS), NO_BUDGET,
                                 TrainConfig(patience=5), frozenset({"patience"})))  # fmt: skip
    assert patient["val_split"] == "val"  # patience needs validation: 11 carved


def test_fewer_than_ten_training_images(caplog):
    with caplog.at_level(logging.WARNING, logger="prodet.detection.recipe"):
        values = chosen(auto_recipe(synthetic_stats(5, [0.4] * 5), NO_BUDGET, TrainConfig(),
                                    frozenset()))  # fmt: skip
    assert "only 5 training images" in caplog.text
    # Nothing held out; one batch of all 5 (lr 0.01 * 5 / 8); 1 step per epoch: 300 epochs
    # (the cap), 300 steps: EMA over max(30, 25) steps.
    assert (values["val_split"], values["batch_size"], values["lr"]) == ("none", 5, 0.00625)
    assert (values["epochs"], values["ema"], values["ema_decay"]) == (300, True, 0.9667)
    one = chosen(auto_recipe(synthetic_stats(1, [0.4]), NO_BUDGET, TrainConfig(), frozenset()))
    assert (one["val_split"], one["batch_size"]) == ("none", 1)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="has no images"):
        auto_recipe(synthetic_stats(0, []), NO_BUDGET, TrainConfig(), frozenset())
    with pytest.raises(ValueError, match="holds no annotated object"):
        auto_recipe(synthetic_stats(12, []), NO_BUDGET, TrainConfig(), frozenset())
    with pytest.raises(ValueError, match="batch_size 16 > the 12 training images"):
        auto_recipe(synthetic_stats(12, [0.4] * 12), NO_BUDGET, TrainConfig(batch_size=16),
                    frozenset({"batch_size"}))  # fmt: skip


def test_untrained_backbone_is_not_frozen():
    values = chosen(auto_recipe(synthetic_stats(71, SMALL_OBJECTS), NO_BUDGET,
                                TrainConfig(backbone_weights="none"), frozenset()))  # fmt: skip
    assert values["freeze"] == 0


def record(image_id: str, width: int, height: int, boxes: list, labels: list) -> ImageRecord:
    return ImageRecord(
        image_id,
        f"JPEGImages/{image_id}.png",
        width,
        height,
        "PNG",
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.zeros(len(labels), dtype=bool),
        "0" * 64,
    )


def dataset(splits: dict[str, tuple[str, ...]]) -> VocDataset:
    records = (
        record("a", 100, 50, [[0, 0, 50, 25]], [1]),  # sqrt(1250 / 5000) = 0.5
        record("b", 200, 200, [[0, 0, 20, 20], [0, 0, 100, 100]], [2, 1]),  # 0.1 and 0.5
        record("c", 300, 300, [[0, 0, 30, 30]], [2]),
        record("d", 40, 40, [], []),
    )
    classes = ("__background__", "x", "y")
    content = compute_content_hash(classes, records, splits)
    return VocDataset(FORMAT_VERSION, "/data", classes, records, splits, "fp", content)


def test_dataset_stats_from_the_records():
    voc = dataset({"trainval": ("a", "b", "d"), "test": ("c",)})
    stats = dataset_stats(voc, train_split="trainval", val_split="val")
    assert stats.split_images == {"trainval": 3, "test": 1} and stats.val_images == 0
    assert stats.objects_per_class == (2, 1) and stats.images_without_objects == 1
    np.testing.assert_allclose(stats.object_sizes, [0.1, 0.5, 0.5], rtol=1e-6)
    assert stats.class_size_medians == pytest.approx((0.5, 0.1))
    assert stats.image_side_median == 100.0  # longer sides 100, 200, 40
    assert stats.aspect_ratios[1] == 1.0  # width / height 2, 1, 1
    assert stats.fraction_below(0.2) == pytest.approx(1 / 3)
    assert dataset_stats(voc, train_split="trainval", val_split="test").val_images == 1
    assert stats.summary()["objects_per_class"] == {"x": 2, "y": 1}
    with pytest.raises(ValueError, match=r"train_split 'train' not in the dataset \(has: test"):
        dataset_stats(voc, train_split="train", val_split="val")


def test_choose_splits_of_voc_and_other_layouts():
    voc_layout = dataset({"train": ("a",), "val": ("b",), "trainval": ("a", "b"), "test": ("c",)})
    [train] = choose_splits(voc_layout, TrainConfig(), frozenset())
    assert (train.key, train.value) == ("train_split", "train")  # val lies inside trainval
    assert choose_splits(voc_layout, TrainConfig(), frozenset({"train_split"})) == []
    other = dataset({"train": ("a", "b"), "valid": ("d",), "test": ("c",)})
    assert chosen(choose_splits(other, TrainConfig(), frozenset())) == {
        "val_split": "valid",
        "train_split": "train",
    }
    with pytest.raises(ValueError, match="no training split: the dataset has test"):
        choose_splits(dataset({"test": ("c",)}), TrainConfig(), frozenset())


def test_config_layers_and_explicit_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("lr: 0.005\nssd:\n  min_scale: 0.1\nfast_rcnn: {}\n")
    base = {"lr": 0.5, "size": 288, "ssd.fpn_channels": 96, "ssd.min_scale": 0.2}
    config = load_config(path, {"size": 256}, base=base)
    # base < file < overrides; a file's section leaves the base's other keys of it alone
    assert (config.lr, config.size, config.ssd.min_scale, config.ssd.fpn_channels) == (
        0.005,
        256,
        0.1,
        96,
    )
    assert yaml_keys(path) == {"lr": 0.005, "ssd.min_scale": 0.1}
    assert explicit_keys(path, {"size": 256}) == {"lr", "ssd.min_scale", "size"}
    assert explicit_keys(None, None) == frozenset()


TINY_FLAGS = ["--size", str(SIZE), "--backbone-weights", "none", "--workers", "0",
              "--batch-size", "4", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny-recipe") / "voc")


def test_cli_recipe_none_is_the_plain_defaults(tiny, tmp_path, capsys):
    run = tmp_path / "none"
    flags = ["--data", str(tiny), "--out", str(run), "--epochs", "1", *TINY_FLAGS]
    assert prodet(["train", *flags, "--recipe", "none"]) == 0
    assert "recipe auto" not in capsys.readouterr().out
    user = {"data": str(tiny), "out": str(run), "epochs": 1, "size": SIZE,
            "backbone_weights": "none", "workers": 0, "batch_size": 4}  # fmt: skip
    assert (run / "config.yaml").read_text() == config_to_yaml(load_config(None, user))
    assert not (run / "recipe.yaml").exists()


def test_cli_auto_keeps_every_user_key_and_resume_keeps_the_saved_config(tiny, tmp_path, capsys):
    run = tmp_path / "auto"
    exp = tmp_path / "exp.yaml"
    exp.write_text("freeze: 1\n")
    flags = ["--data", str(tiny), "--out", str(run), "--epochs", "1", *TINY_FLAGS]
    assert prodet(["train", *flags, "--config", str(exp), "--set", "preset=scale"]) == 0
    printed = capsys.readouterr().out
    assert "recipe auto (trainval: 12 images, 2 classes, 12 objects)" in printed
    assert "  preset            scale    yours" in printed
    assert "  val_split         none     12 training images < 150" in printed
    saved = yaml.safe_load((run / "config.yaml").read_text())
    # yours: preset (--set), freeze (--config), size (flag); chosen: val_split, mosaic, ema
    assert (saved["preset"], saved["freeze"], saved["size"]) == ("scale", 1, SIZE)
    assert (saved["val_split"], saved["mosaic"], saved["ema"]) == ("none", 0.0, False)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["statistics"]["train_images"] == 12
    assert recipe["chosen"]["val_split"]["value"] == "none"
    assert recipe["yours"] == {"batch_size": 4, "size": SIZE, "preset": "scale", "freeze": 1,
                               "epochs": 1, "workers": 0}  # fmt: skip
    before = (run / "recipe.yaml").read_text()
    # Resumed with none of those flags: the saved config, not fresh choices (which would
    # bring 224 px, pretrained weights, the light preset and freeze 0).
    assert prodet(["train", "--data", str(tiny), "--out", str(run), "--resume", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "--resume: the saved" in printed and "recipe auto" not in printed
    assert "1 epochs (epochs)" in printed
    assert yaml.safe_load((run / "config.yaml").read_text()) == saved
    assert (run / "recipe.yaml").read_text() == before


def test_cli_auto_on_commodity_prints_and_saves_the_choices(tmp_path):
    voc = shared_path("commodity_voc")
    data = tmp_path / "commodity.pkl"
    convert = [sys.executable, "-m", "prodet", "convert", str(voc), "-o", str(data), "--quiet"]
    subprocess.run(convert, cwd=REPO, check=True, capture_output=True)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "prodet", "train", "--data", str(data), "--out", str(run)]
    done = subprocess.run(
        [*cmd, "--epochs", "1", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recipe auto (trainval: 71 images, 8 classes, 142 objects)" in done.stdout
    for line in (
        "  size              320 ",
        "  ssd.fpn_channels  96 ",
        "  val_split         none ",
    ):
        assert line in done.stdout
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["size"], saved["ssd"]["fpn_channels"], saved["val_split"]) == (320, 96, "none")
    assert (saved["preset"], saved["freeze"], saved["epochs"]) == ("light", 2, 1)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["chosen"]["size"]["value"] == 320 and recipe["yours"] == {"epochs": 1}
