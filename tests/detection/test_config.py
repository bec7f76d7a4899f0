"""The typed training config: defaults, YAML, overrides, validation, round trip."""

from __future__ import annotations

import pytest

from prodet.detection.config import config_keys, config_to_yaml, load_config, parse_overrides


def test_overrides_are_typed_and_nested():
    config = load_config(None, parse_overrides(["lr=0.02", "ssd.min_scale=0.1", "ema=true"]))
    assert config.lr == 0.02 and config.ssd.min_scale == 0.1 and config.ema is True
    assert load_config(None, {"max_minutes": "none"}).max_minutes is None
    assert load_config(None, {"ssd.extra_channels": "128,64"}).ssd.extra_channels == (128, 64)


def test_yaml_then_overrides_and_round_trip(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("epochs: 5\nlr: 0.005\nssd:\n  max_scale: 0.8\n")
    config = load_config(path, {"lr": 0.001})
    assert (config.epochs, config.lr, config.ssd.max_scale) == (5, 0.001, 0.8)
    saved = tmp_path / "config.yaml"
    saved.write_text(config_to_yaml(config))
    assert load_config(saved) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bogus": 1}, "unknown config key"),
        ({"ssd.bogus": 1}, r"unknown config key 'ssd\.bogus'; known: ssd\.detections_per_img"),
        ({"head": "yolo"}, "head='yolo': expected one of ssd, fast_rcnn"),
        ({"epochs": "many"}, "epochs='many'"),
        ({"epochs": 0}, "epochs=0: must be at least 1"),
        ({"ema": "maybe"}, "ema='maybe'"),
        ({"mosaic": 1.5}, r"mosaic=1.5: a probability in \[0, 1\]"),
        ({"cache_mb": -1}, "cache_mb=-1.0: must be >= 0"),
        ({"cache": "ssd"}, "cache='ssd': expected one of ram, disk, none"),
        ({"decode_oversample": 0.5}, "decode_oversample=0.5: must be >= 1"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    ("overrides", "typo", "closest"),
    [
        ({"ssd.fpn_channel": 96}, "ssd.fpn_channel", "ssd.fpn_channels"),
        ({"fpn_channels": 96}, "fpn_channels", "ssd.fpn_channels"),  # the parent forgotten
        ({"ema_decey": 0.99}, "ema_decey", "ema_decay"),
        ({"fast_rcnn.dropuot": 0.3}, "fast_rcnn.dropuot", "fast_rcnn.dropout"),
    ],
)
def test_unknown_key_names_the_closest_valid_one(overrides, typo, closest):
    with pytest.raises(ValueError) as caught:
        load_config(None, overrides)
    assert str(caught.value) == f"unknown config key {typo!r} (did you mean {closest!r}?)"


def test_unknown_key_in_a_yaml_file_names_the_closest_valid_one(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("head: ssd\nbatch_sise: 8\n")
    with pytest.raises(ValueError, match=r"'batch_sise' \(did you mean 'batch_size'\?\)"):
        load_config(path)


def test_config_keys_are_dotted_and_typed():
    keys = config_keys()
    assert keys["lr"] is float and keys["ssd.fpn_channels"] is int
    assert keys["fast_rcnn.roi_op"] is str and "ssd" not in keys


def test_bad_override_syntax():
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_overrides(["lr"])


def test_image_cache_and_decoding_keys():
    config = load_config(None, {"cache": "disk", "cache_dir": "/tmp/c", "fast_jpeg": "false"})
    assert (config.cache, config.cache_dir, config.fast_jpeg) == ("disk", "/tmp/c", False)
    defaults = load_config(None, {})
    assert (defaults.cache, defaults.fast_jpeg, defaults.decode_oversample) == ("ram", True, 2.0)
