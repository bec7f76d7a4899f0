"""Trained tiny detectors (SSD and Fast R-CNN) and their gated exports, shared by the tests.

Both heads are trained with ``fit`` on ``make_tiny_dataset`` (64 x 64 images, one red
square or blue disc each) from a random backbone for a few epochs: enough for
differentiated scores, which is all export needs. The ``test`` split (28 images) is the
validation split, so the parity gate has its 16 real images. Fast R-CNN runs at 80 px:
not a multiple of 32, so the padding of its internal transform is exported as well.

torch runs on one thread here: on two shared cores, two threads are several times slower.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from prodet.detection.config import load_config
from prodet.detection.trainer import fit
from prodet.export.pipeline import ExportOptions, ExportResult, export_checkpoint
from tests.detection.test_trainer import make_tiny_dataset, tiny_overrides

HEADS = ("ssd", "fast_rcnn")
EPOCHS = 8
HEAD_OVERRIDES = {
    "ssd": {"size": 64},
    # NCHW training: the crowded image must reach many detections with this tiny model
    "fast_rcnn": {"size": 80, "fast_rcnn.representation": 64, "channels_last": False},
}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 images: 12 in ``trainval``, 28 in ``test``."""
    return make_tiny_dataset(tmp_path_factory.mktemp("export-data") / "voc", n=40)


@pytest.fixture(scope="session")
def checkpoints(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``last.pt`` of each head, validated (once, at the end) on the ``test`` split."""
    paths = {}
    for head in HEADS:
        out = tmp_path_factory.mktemp(f"run-{head}")
        overrides = {
            **tiny_overrides(tiny_data, out, epochs=EPOCHS),
            "head": head,
            "val_split": "test",
            "eval_every": EPOCHS,
            "preset": "light",
            **HEAD_OVERRIDES[head],
        }
        fit(load_config(None, overrides), progress=False)
        paths[head] = out / "last.pt"
    return paths


@pytest.fixture(scope="session")
def exported(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ExportResult]:
    """Each head exported with the default options (fp32, dynamic batch), gate passed."""
    folder = tmp_path_factory.mktemp("onnx")
    return {
        head: export_checkpoint(path, folder / f"{head}.onnx", ExportOptions(threads=1))
        for head, path in checkpoints.items()
    }
