"""Run an exported model in onnxruntime, batch by batch, unpadding its outputs per image.

The outputs are checked and split by ``export.onnx_contract.unpad`` (Contract 3).
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from prodet.export.onnx_contract import INPUT_NAME, OUTPUT_NAMES, Detections, unpad

CPU_PROVIDER = "CPUExecutionProvider"


def open_session(
    model: str | os.PathLike[str] | bytes,
    *,
    threads: int = 0,
    providers: list[str] | None = None,
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
