"""Checkpoints: atomic, weights-only loadable, RNG states restored exactly."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from prodet.detection.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def test_round_trip_restores_every_rng(tmp_path):
    state = rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    save_checkpoint({"rng": state, "epoch": 3}, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(loaded["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert loaded["epoch"] == 3


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable prodet checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no format marker"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Exploit()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
