"""Detection on image files without HTTP, through the service's own pre/post-processing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from prodet.annotations.decoded_image import DecodedImage
from prodet.annotations.image_decode import ImageDecodeError
from prodet.serve.draw import annotate
from prodet.serve.model_runner import ModelRunner
from prodet.serve.postprocess import Detection, DetectionFilter, select_detections
from prodet.serve.preprocess import PreparedImage, decode_for_model, prepare_decoded

PredictOutcome = tuple[dict[str, Any], Image.Image] | Exception


def predict_files(
    runner: ModelRunner,
    paths: Sequence[Path],
    keep: dict[str, Any],
    *,
    batch_size: int,
    max_pixels: int,
    fast_jpeg: bool = True,
) -> Iterator[tuple[Path, PredictOutcome]]:
    """Detect objects in each file, ``batch_size`` images per ``session.run``.

    Args:
        runner: the loaded model.
        paths: image files (formats are sniffed from the bytes).
        keep: ``DetectionFilter.build`` keyword arguments.
        batch_size: images per inference batch.
        max_pixels: the largest ``width * height`` accepted.
        fast_jpeg: decode JPEGs at reduced size as the service does
            (``serve.preprocess``); the annotated image is then drawn at that size.

    Yields:
        ``(path, (record, annotated))`` in input order, where ``record`` has the shape of
        the HTTP API's ``DetectResponse`` (without timings) plus ``image`` (boxes in the
        original's pixels); ``annotated`` is the decoded image with the boxes drawn; or
        ``(path, error)`` for a file that cannot be read or decoded.

    Raises:
        ValueError: ``keep`` names an unknown class or a value out of range.
    """
    selection = DetectionFilter.build(runner.metadata, **keep)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        ready: list[tuple[Path, DecodedImage, PreparedImage]] = []
        failed: dict[Path, Exception] = {}
        for path in chunk:
            try:
                decoded = decode_for_model(
                    path.read_bytes(), runner.metadata, max_pixels=max_pixels, fast_jpeg=fast_jpeg
                )
            except (OSError, ImageDecodeError) as exc:
                failed[path] = exc
                continue
            ready.append((path, decoded, prepare_decoded(decoded, runner.metadata)))
        raws = runner.run(np.stack([p.tensor for _, _, p in ready])) if ready else []
        answers = {
            path: (decoded, prepared, raw)
            for (path, decoded, prepared), raw in zip(ready, raws, strict=True)
        }
        for path in chunk:
            if path in failed:
                yield path, failed[path]
                continue
            decoded, prepared, raw = answers[path]
            detections = select_detections(raw, prepared, runner.metadata, selection)
            record = {
                "image": str(path),
                "model_id": runner.model_id,
                "model_version": runner.version,
                "width": prepared.width,
                "height": prepared.height,
                "format": prepared.format,
                "detections": [d.as_dict() for d in detections],
            }
            yield path, (record, annotate(decoded.pixels, _on_pixels(decoded, detections)))


def _on_pixels(decoded: DecodedImage, detections: list[Detection]) -> list[Detection]:
    """The detections with their boxes moved onto ``decoded.pixels`` (for drawing)."""
    if not decoded.reduced or not detections:
        return detections
    boxes = decoded.boxes_to_pixels(np.asarray([d.box for d in detections], np.float64))
    return [
        dataclasses.replace(d, box=(float(x1), float(y1), float(x2), float(y2)))
        for d, (x1, y1, x2, y2) in zip(detections, boxes, strict=True)
    ]
