"""The checkpoint format: everything needed to resume exactly or to export.

A checkpoint is a ``torch.save`` dict holding only tensors and plain Python values, so
it loads with ``torch.load(weights_only=True)`` (no code runs on load):

    format: "prodet-checkpoint", version: 1
    config: TrainConfig as a dict          classes: list of names (0 = background)
    dataset_hash: the dataset's content hash
    model: state_dict                      ema: state_dict or None
    optimizer, scheduler: state_dicts      epoch: epochs completed
    planned_epochs: the schedule's horizon history: per-epoch metric dicts
    best_map: best val mAP so far          rng: python/numpy/torch(/cuda) states
    input: {"size", "mean", "std", "resize_mode"}

Writes are atomic (temp file + rename), so a run killed during a save keeps the
previous checkpoint.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prodet.annotations.atomic import atomic_write_bytes

CHECKPOINT_FORMAT = "prodet-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a checkpoint this version of prodet can use."""


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as weights-only-loadable values."""
    numpy_state = np.random.get_state()
    if not isinstance(numpy_state, tuple):  # a dict when the global generator is not MT19937
        raise TypeError("numpy's global random generator is not the legacy MT19937")
    kind, keys, pos, has_gauss, gauss = numpy_state
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Atomically write ``payload`` (see module doc for the keys)."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing code from it.

    Raises:
        CheckpointError: missing, unreadable, or not a prodet checkpoint of this version.
    """
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle and zip errors come in many types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable prodet checkpoint ({first})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a prodet checkpoint (no format marker)")
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {data.get('version')}, this prodet reads "
            f"{CHECKPOINT_VERSION}"
        )
    return data
