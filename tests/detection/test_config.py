"""The typed training config: defaults, YAML, overrides, validation, round trip."""

from __future__ import annotations

import pytest

from prodet.detection.config import config_to_yaml, load_config, parse_overrides


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
        ({"ssd.bogus": 1}, r"unknown config key\(s\) ssd\.bogus"),
        ({"head": "yolo"}, "head='yolo': expected one of ssd, fast_rcnn"),
        ({"epochs": "many"}, "epochs='many'"),
        ({"epochs": 0}, "epochs=0: must be at least 1"),
        ({"ema": "maybe"}, "ema='maybe'"),
        ({"mosaic": 1.5}, r"mosaic=1.5: a probability in \[0, 1\]"),
        ({"cache_mb": -1}, "cache_mb=-1.0: must be >= 0"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_bad_override_syntax():
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_overrides(["lr"])
