"""The HTTP API's response bodies (they also document it at ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Schema(BaseModel):
    # Field names such as ``model_id`` are part of the API, not pydantic internals.
    model_config = ConfigDict(protected_namespaces=())


class Box(_Schema):
    """``x1, y1, x2, y2`` in 0-based continuous pixels of the original (EXIF-upright) image."""

    x1: float
    y1: float
    x2: float
    y2: float


class DetectionOut(_Schema):
    """One detected object."""

    label: str = Field(description="class name")
    class_id: int = Field(description="index into the model's classes (never 0)")
    score: float
    box: Box


class Timings(_Schema):
    """Where the time went, in milliseconds (``total_ms`` covers the whole request)."""

    decode_ms: float = Field(description="decoding and pre-processing this image")
    queue_ms: float = Field(description="waiting for a batch")
    inference_ms: float = Field(description="session.run of the batch this image was in")
    total_ms: float
    batch_size: int = Field(description="images in the inference batch")


class DetectResponse(_Schema):
    """Detections in one image."""

    model_id: str
    model_version: str = Field(description="first 12 hex digits of the model file's sha256")
    width: int = Field(description="image width after EXIF orientation")
    height: int = Field(description="image height after EXIF orientation")
    format: str = Field(description="format sniffed from the bytes")
    detections: list[DetectionOut]
    timings: Timings


class BatchResponse(_Schema):
    """Detections per image, in the order the images were sent."""

    results: list[DetectResponse]


class ModelInfo(_Schema):
    """The served model's contract metadata and runtime."""

    model_id: str
    model_version: str
    sha256: str
    classes: list[str] = Field(description="index 0 is __background__")
    input_size: int
    resize_mode: str
    mean: list[float]
    std: list[float]
    head: str
    backbone: str
    val_map: float | None = Field(description="VOC mAP@0.5 on the validation split")
    precision: str
    detections_per_img: int
    score_thresh: float
    dataset_hash: str
    exporter: str
    opset: str
    exported_at: str
    provider: str = Field(description="execution provider actually running the graph")
    providers: list[str]
    warmup_ms: float
    last_reload_error: str | None = Field(
        None, description="why the last reload (POST or SIGHUP) failed; null after a success"
    )


class ReloadResponse(_Schema):
    """The outcome of a successful hot reload."""

    status: str
    previous_version: str
    model: ModelInfo


class Status(_Schema):
    """Liveness or readiness."""

    status: str
    model_version: str | None = None
    detail: str | None = Field(None, description="why not ready, when that is known")
