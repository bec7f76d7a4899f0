"""An evaluation's files: PR curves (PNG), per-class table, JSON summary, COCO results.

``write_evaluation`` writes, each atomically (``annotations.atomic``):

* ``summary.json``: VOC mAPs, the 12 COCO stats and one row per class; NaN (a class or
  area range without ground truth) is written as ``null``;
* ``per_class.md``: the same per-class rows as a Markdown table;
* ``predictions_coco.json``: the predictions in COCO results format;
* ``pr_curves.png``: one small panel per class, with the ranked precision/recall curve
  and the monotone envelope whose area is the VOC area AP.

Figures use matplotlib's object API on the Agg canvas, never pyplot, so no global backend
or figure state is touched.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prodet.annotations.atomic import atomic_write_bytes
from prodet.detection.metrics_coco import CocoResult
from prodet.detection.metrics_voc import VocResult, precision_envelope

PANEL_COLUMNS = 4


def plot_pr_curves(result: VocResult) -> bytes:
    """PNG bytes of one panel per class: precision against recall at the result's IoU."""
    count = len(result.classes)
    columns = min(PANEL_COLUMNS, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(3.2 * columns, 2.9 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, cls in zip(axes, result.classes, strict=False):
        ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.02), xlabel="recall", ylabel="precision")
        ax.grid(alpha=0.3)
        if cls.npos == 0:
            ax.set_title(f"{cls.name}: no ground truth", fontsize=9)
            continue
        ax.set_title(
            f"{cls.name}  AP {cls.ap_area:.3f}  (VOC07 {cls.ap_11point:.3f})\n"
            f"{cls.npos} objects, {cls.num_tp} TP, {cls.num_fp} FP",
            fontsize=9,
        )
        if cls.recall.size:
            envelope = precision_envelope(cls.precision)
            ax.plot(cls.recall, cls.precision, color="tab:blue", linewidth=1.0, label="ranked")
            # "pre" holds envelope[i] over (recall[i-1], recall[i]], the area AP's steps.
            ax.step(
                [0.0, *cls.recall],
                [envelope[0], *envelope],
                where="pre",
                color="tab:orange",
                linestyle="--",
                linewidth=1.0,
                label="envelope",
            )
            ax.legend(loc="lower left", fontsize=7)
    for ax in axes[count:]:
        ax.set_visible(False)
    figure.suptitle(f"Precision-recall at IoU {result.iou_threshold:g}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def per_class_rows(result_voc: VocResult, result_coco: CocoResult) -> list[dict[str, Any]]:
    """One dict per class: counts, VOC APs and COCO APs (NaN where there is no ground truth)."""
    return [
        {
            "label": cls.label,
            "name": cls.name,
            "npos": cls.npos,
            "detections": cls.num_detections,
            "tp": cls.num_tp,
            "fp": cls.num_fp,
            "ap_voc07": cls.ap_11point,
            "ap_area": cls.ap_area,
            "ap_coco": result_coco.per_class_ap[cls.name],
            "ap50_coco": result_coco.per_class_ap50[cls.name],
        }
        for cls in result_voc.classes
    ]


def per_class_table(result_voc: VocResult, result_coco: CocoResult) -> str:
    """The per-class rows as a Markdown table, with a mean row; ``n/a`` marks NaN."""
    rows = per_class_rows(result_voc, result_coco)
    header = [
        "class",
        "objects",
        "detections",
        "TP",
        "FP",
        "AP VOC07",
        "AP area",
        "AP COCO",
        "AP50 COCO",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["name"],
            row["npos"],
            row["detections"],
            row["tp"],
            row["fp"],
            _fmt(row["ap_voc07"]),
            _fmt(row["ap_area"]),
            _fmt(row["ap_coco"]),
            _fmt(row["ap50_coco"]),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    means = [
        "**mean**",
        "",
        "",
        "",
        "",
        _fmt(result_voc.map_11point),
        _fmt(result_voc.map_area),
        _fmt(result_coco.stats["AP"]),
        _fmt(result_coco.stats["AP50"]),
    ]
    lines.append("| " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def evaluation_summary(result_voc: VocResult, result_coco: CocoResult) -> dict[str, Any]:
    """Everything measured, as a JSON-ready dict (NaN becomes ``None``)."""
    summary = {
        "voc": {
            "iou_threshold": result_voc.iou_threshold,
            "map_11point": result_voc.map_11point,
            "map_area": result_voc.map_area,
            "classes_without_ground_truth": [c.name for c in result_voc.classes if c.npos == 0],
        },
        "coco": result_coco.stats,
        "per_class": per_class_rows(result_voc, result_coco),
    }
    return _nan_to_none(summary)


def write_evaluation(
    out_dir: str | os.PathLike[str],
    result_voc: VocResult,
    result_coco: CocoResult,
    class_names: Sequence[str],
    predictions_coco: list[dict[str, Any]],
) -> dict[str, Path]:
    """Write the files listed in the module doc into ``out_dir``; return them by kind.

    Raises:
        ValueError: if ``class_names`` (background first) are not the results' classes.
    """
    expected = tuple(class_names)[1:]
    for source, names in (
        ("result_voc", tuple(c.name for c in result_voc.classes)),
        ("result_coco", tuple(result_coco.per_class_ap)),
    ):
        if names != expected:
            raise ValueError(
                f"{source} covers classes {names}, but class_names[1:] is {expected}; "
                "evaluate with the same class_names"
            )
    out = Path(out_dir)
    paths = {
        "summary": out / "summary.json",
        "per_class": out / "per_class.md",
        "predictions": out / "predictions_coco.json",
        "pr_curves": out / "pr_curves.png",
    }
    summary = evaluation_summary(result_voc, result_coco)
    atomic_write_bytes(paths["summary"], _json_bytes(summary, indent=2))
    atomic_write_bytes(paths["per_class"], per_class_table(result_voc, result_coco).encode())
    atomic_write_bytes(paths["predictions"], _json_bytes(predictions_coco, indent=None))
    atomic_write_bytes(paths["pr_curves"], plot_pr_curves(result_voc))
    return paths


def _json_bytes(payload: Any, indent: int | None) -> bytes:
    return json.dumps(payload, indent=indent, allow_nan=False, ensure_ascii=False).encode()


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"
