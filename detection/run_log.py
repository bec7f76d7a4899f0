"""What a training run leaves in its folder besides checkpoints.

``metrics.csv`` (one row per epoch, rewritten atomically from the history, so a resumed
run's file matches an uninterrupted one), TensorBoard event files under ``tensorboard/``
and ``curves.png`` (loss and validation mAP against epoch).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from prodet.annotations.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """All epochs' metrics as CSV; columns are the union of keys, in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


class TensorBoardLog:
    """Scalars to TensorBoard; a no-op (with one warning) if tensorboard is missing."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra at run time
            logger.warning("tensorboard is not installed; no event files are written")
            self._writer = None
        else:
            self._writer = SummaryWriter(log_dir=str(folder))

    def log(self, epoch: int, row: dict[str, Any]) -> None:
        if self._writer is None:
            return
        for key, value in row.items():
            if isinstance(value, int | float) and key != "epoch":
                self._writer.add_scalar(key.replace("_", "/", 1), value, epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def plot_curves(path: Path, history: list[dict[str, Any]]) -> None:
    """``curves.png``: training losses (left) and validation mAP (right) per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    losses, maps = figure.subplots(1, 2)
    loss_keys = [k for k in history[0] if k.startswith("train_loss")] if history else []
    for key in loss_keys:
        losses.plot(epochs, [row.get(key) for row in history], label=key.removeprefix("train_"))
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.set_title("training loss")
    if loss_keys:
        losses.legend(fontsize=8)
    plotted = False
    for key, label in (("val_map_area", "VOC area mAP@0.5"), ("val_coco_ap", "COCO mAP")):
        points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        if points:
            maps.plot(*zip(*points, strict=True), marker="o", label=label)
            plotted = True
    maps.set_xlabel("epoch")
    maps.set_ylim(0, 1)
    maps.set_title("validation" if plotted else "validation: none (val_split none)")
    if plotted:
        maps.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
