"""Checkpoints: atomic, weights-only loadable, RNG states restored exactly."""

from __future__ import annotations

import os
import random
import shlex

import numpy as np
import pytest
import torch

from prodet.detection.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
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
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def test_refuses_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable prodet checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no format marker"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_checkpoint_carrying_code_is_refused_before_the_code_runs(tmp_path):
    marker = tmp_path / "pwned"
    # A real checkpoint file, format marker and version included: only the payload is wrong.
    evil = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "x": Exploit(str(marker))}
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"not a readable prodet checkpoint \(Weights only"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # The file is a live exploit: a plain torch.load runs the payload.
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()
