"""Detection on image files without HTTP, through the service's own pre/post-processing.

``detect_files`` runs one batch of files through one ``session.run``: the in-process loop
of ``prodet predict`` (``serve.batch_predict``) and each Ray Data actor
(``serve.batch_cluster``) call it, so both give the same detections for the same file.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prodet.annotations.decoded_image import DecodedImage
from prodet.annotations.image_decode import ImageDecodeError
from prodet.serve.draw import annotate
from prodet.serve.model_runner import ModelRunner
from prodet.serve.postprocess import Detection, DetectionFilter, select_detections
from prodet.serve.preprocess import PreparedImage, decode_for_model, prepare_decoded


@dataclass(frozen=True)
class ImagePrediction:
    """One image's detections.

    Attributes:
        record: the HTTP API's ``DetectResponse`` without timings, plus ``image`` (the
            path as read): ``width``/``height`` of the original, EXIF-oriented image and
            ``detections``, whose boxes are ``x1, y1, x2, y2`` in its pixels.
        orientation: the EXIF orientation applied to the stored pixels (``1``: none);
            ``annotations.orientation.INVERSE`` maps the boxes back to the stored layout.
        annotated_png: the decoded image with the boxes drawn, PNG-encoded; None unless
            asked for. A JPEG decoded at reduced size is drawn at that size.
    """

    record: dict[str, Any]
    orientation: int
    annotated_png: bytes | None = None


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be read or decoded; ``reason`` says why in one line."""

    reason: str


ImageOutcome = ImagePrediction | ImageFailure


def detect_files(
    runner: ModelRunner,
    selection: DetectionFilter,
    paths: Sequence[str],
    *,
    max_pixels: int,
    fast_jpeg: bool = True,
    draw: bool = False,
) -> list[ImageOutcome]:
    """Detect objects in each file, all of them in one ``session.run``.

    Args:
        runner: the loaded model.
        selection: which detections to keep (``DetectionFilter.build``).
        paths: image files (formats are sniffed from the bytes).
        max_pixels: the largest ``width * height`` accepted.
        fast_jpeg: decode JPEGs at reduced size as the service does (``serve.preprocess``).
        draw: also return each image with its boxes drawn, as PNG bytes.

    Returns:
        One outcome per path, in order: the prediction, or why the file was unusable.
    """
    ready: list[tuple[int, str, DecodedImage, PreparedImage]] = []
    outcomes: list[ImageOutcome | None] = [None] * len(paths)
    for index, path in enumerate(paths):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            decoded = decode_for_model(
                data, runner.metadata, max_pixels=max_pixels, fast_jpeg=fast_jpeg
            )
        except OSError as exc:
            outcomes[index] = ImageFailure(f"cannot read the file: {exc.strerror or exc}")
            continue
        except ImageDecodeError as exc:
            outcomes[index] = ImageFailure(str(exc))
            continue
        ready.append((index, path, decoded, prepare_decoded(decoded, runner.metadata)))
    if ready:
        raws = runner.run(np.stack([prepared.tensor for _, _, _, prepared in ready]))
        for (index, path, decoded, prepared), raw in zip(ready, raws, strict=True):
            detections = select_detections(raw, prepared, runner.metadata, selection)
            record = {
                "image": path,
                "model_id": runner.model_id,
                "model_version": runner.version,
                "width": prepared.width,
                "height": prepared.height,
                "format": prepared.format,
                "detections": [d.as_dict() for d in detections],
            }
            png = _annotated_png(decoded, detections) if draw else None
            outcomes[index] = ImagePrediction(record, decoded.orientation, png)
    return [outcome for outcome in outcomes if outcome is not None]


def _annotated_png(decoded: DecodedImage, detections: list[Detection]) -> bytes:
    buffer = io.BytesIO()
    annotate(decoded.pixels, _on_pixels(decoded, detections)).save(buffer, format="PNG")
    return buffer.getvalue()


def _on_pixels(decoded: DecodedImage, detections: list[Detection]) -> list[Detection]:
    """The detections with their boxes moved onto ``decoded.pixels`` (for drawing)."""
    if not decoded.reduced or not detections:
        return detections
    boxes = decoded.boxes_to_pixels(np.asarray([d.box for d in detections], np.float64))
    return [
        dataclasses.replace(d, box=(float(x1), float(y1), float(x2), float(y2)))
        for d, (x1, y1, x2, y2) in zip(detections, boxes, strict=True)
    ]
