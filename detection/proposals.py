"""Precomputed region proposals per image, for Fast R-CNN without its RPN.

The original Fast R-CNN took about 2,000 selective-search boxes per image. To supply such
boxes:

1. Compute them with any external tool on the stored images, as ``[P, 4]`` arrays of
   ``x1, y1, x2, y2`` in 0-based pixels of the **original** image.
2. ``save_proposals("proposals.npz", {image_id: boxes, ...})``, keyed by the record ids
   of the pickled dataset.
3. Build the detector with ``build_fast_rcnn(..., proposal_source="precomputed")`` (or
   keep the RPN: any Fast R-CNN accepts proposals and then skips its RPN).
4. For each batch of a loader built with the ``"eval"`` preset, map the boxes onto the
   model input and pass them in::

       store = load_proposals("proposals.npz")
       boxes = proposals_for_batch(store, targets, size=images.shape[-1])
       losses = model(images, model_targets, proposals=boxes)  # training
       detections = model(images, proposals=boxes)  # eval

``prodet train --head fast_rcnn --proposals-file proposals.npz --preset eval`` does steps 3
and 4 (``proposal_fn``), and ``prodet evaluate`` reuses the run's file (or
``--proposals-file``).

Random augmentation presets move each sample's boxes differently, which boxes saved on
disk cannot follow; ``proposals_for_batch`` therefore needs targets with a fixed
``"geometry"`` (the ``"eval"`` preset's), and refuses the others.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prodet.annotations.atomic import atomic_write_bytes


def _check_boxes(image_id: str, boxes: np.ndarray) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(
            f"proposals for {image_id!r} have shape {list(array.shape)}; expected [P, 4] "
            "x1,y1,x2,y2 boxes in original-image pixels"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"proposals for {image_id!r} contain NaN or inf")
    return array


def save_proposals(path: str | os.PathLike[str], proposals: Mapping[str, np.ndarray]) -> None:
    """Write ``{image_id: [P, 4] boxes}`` (original-image pixels) as an ``.npz`` file."""
    checked = {image_id: _check_boxes(image_id, boxes) for image_id, boxes in proposals.items()}
    buffer = io.BytesIO()
    # allow_pickle is numpy's default, passed by name so no image id can be taken for it.
    np.savez_compressed(buffer, allow_pickle=True, **checked)
    atomic_write_bytes(path, buffer.getvalue())


def load_proposals(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a file written by ``save_proposals``: ``{image_id: float32 [P, 4]}``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {image_id: _check_boxes(image_id, archive[image_id]) for image_id in archive}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a proposals file from save_proposals ({exc})") from None


def proposals_for_batch(
    store: Mapping[str, np.ndarray], targets: Sequence[Mapping[str, Any]], *, size: int
) -> list[Tensor]:
    """The stored proposals of each target's image, on the ``size x size`` model input.

    Args:
        store: ``{image_id: [P, 4]}`` in original-image pixels (``load_proposals``).
        targets: the loader's targets, with ``"image_id"`` and ``"geometry"`` (a
            ``datasets.geometry.ResizeGeometry``: ``input_xy = orig_xy * scale + pad``).
        size: side of the model input.

    Returns:
        Per image a float32 ``[P, 4]`` tensor, ``x1, y1, x2, y2`` in input pixels, clipped
        to ``[0, size]``.
    """
    batch = []
    for target in targets:
        image_id = target["image_id"]
        if image_id not in store:
            raise ValueError(f"no precomputed proposals for image {image_id!r}")
        geometry = target.get("geometry")
        if geometry is None:
            raise ValueError(
                f"image {image_id!r} comes from a random augmentation preset; precomputed "
                "proposals need a fixed geometry (build the loader with the 'eval' preset)"
            )
        sx, sy = geometry.scale
        px, py = geometry.pad
        boxes = torch.from_numpy(store[image_id]) * torch.tensor([sx, sy, sx, sy])
        batch.append((boxes + torch.tensor([px, py, px, py])).clamp(0, size).float())
    return batch


def proposal_fn(
    path: str | os.PathLike[str],
) -> Callable[[Sequence[Mapping[str, Any]], int], list[Tensor]]:
    """Load a proposals file once; return ``fn(targets, size)`` for the training loop."""
    store = load_proposals(path)
    if not store:
        raise ValueError(f"{path}: the proposals file holds no images")

    def for_batch(targets: Sequence[Mapping[str, Any]], size: int) -> list[Tensor]:
        return proposals_for_batch(store, targets, size=size)

    return for_batch
