"""Run an exported model in onnxruntime and unpad its outputs, checking Contract 3 on the way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from prodet.export.onnx_export import INPUT_NAME, OUTPUT_NAMES

CPU_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class Detections:
    """One image's detections, best first.

    Attributes:
        boxes: float32 ``[K, 4]``, ``x1, y1, x2, y2`` in model-input pixels.
        scores: float32 ``[K]``.
        labels: int64 ``[K]``, indices into the model's classes (never 0).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def open_session(
    model: str | Path | bytes, *, threads: int = 0, providers: list[str] | None = None
) -> ort.InferenceSession:
    """An onnxruntime session (all graph optimisations; ``threads=0``: onnxruntime's default)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers or [CPU_PROVIDER])


def fixed_batch_size(session: ort.InferenceSession) -> int | None:
    """The graph's batch size when fixed at export (``--batch N``), else None."""
    first = session.get_inputs()[0].shape[0]
    return first if isinstance(first, int) else None


def unpad(outputs: list[np.ndarray], batch: int) -> list[Detections]:
    """Split Contract 3's padded outputs ``[boxes, scores, labels, num_detections]`` per image.

    Raises:
        ValueError: shapes disagree with ``batch``, a count is outside ``[0, D]``, or a
            padding row is not all zeros.
    """
    boxes, scores, labels, counts = outputs
    rows = scores.shape[1] if scores.ndim == 2 else -1
    if boxes.shape != (batch, rows, 4) or labels.shape != (batch, rows) or counts.shape != (batch,):
        raise ValueError(
            f"outputs for {batch} images have shapes {boxes.shape}, {scores.shape}, "
            f"{labels.shape}, {counts.shape}; expected [{batch}, D, 4], [{batch}, D] x 2, [{batch}]"
        )
    result = []
    for i in range(batch):
        count = int(counts[i])
        if not 0 <= count <= rows:
            raise ValueError(f"image {i}: num_detections {count} outside [0, {rows}]")
        padding = (boxes[i, count:].any(), scores[i, count:].any(), labels[i, count:].any())
        if any(padding):
            raise ValueError(f"image {i}: padding rows after row {count} are not all zero")
        result.append(
            Detections(
                boxes[i, :count].astype(np.float32),
                scores[i, :count].astype(np.float32),
                labels[i, :count].astype(np.int64),
            )
        )
    return result


def run_batches(
    session: ort.InferenceSession, images: np.ndarray, batch_size: int
) -> list[Detections]:
    """Detections of every image in ``images`` (float32 ``[N, 3, S, S]``), ``batch_size`` at a time.

    A graph with a fixed batch size gets its own size; a short last batch is filled with
    copies of its last image whose results are dropped.
    """
    fixed = fixed_batch_size(session)
    step = fixed or batch_size
    if step < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    result: list[Detections] = []
    for start in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[start : start + step], dtype=np.float32)
        real = len(chunk)
        if fixed and real < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - real, axis=0)])
        outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
        result.extend(unpad(outputs, len(chunk))[:real])
    return result
