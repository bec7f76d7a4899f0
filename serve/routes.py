"""The ``/v1`` API: detection (single and batch), the model's metadata, hot reload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from prodet.serve.deps import ApiKeyDep, ServiceDep
from prodet.serve.errors import ApiError, ErrorBody
from prodet.serve.schemas import BatchResponse, DetectResponse, ModelInfo, ReloadResponse
from prodet.serve.service import model_info

_RAW_TYPES = ("application/octet-stream",)
_MAX_FORM_FIELDS = 100
_IMAGE_SCHEMA = {"type": "string", "format": "binary"}

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "damaged or truncated image",
        401: "missing or wrong API key",
        413: "body, image or batch too large",
        415: "not an image of a supported format",
        422: "bad parameter",
        503: "queue full or not ready (see Retry-After)",
        504: "no answer within the request timeout",
    }.items()
}


def _upload_body(field: str, *, many: bool) -> dict[str, Any]:
    file_schema = {"type": "array", "items": _IMAGE_SCHEMA} if many else _IMAGE_SCHEMA
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {field: file_schema}, "required": [field]}
        }
    }
    if not many:
        content["image/*"] = {"schema": _IMAGE_SCHEMA}
    return {"requestBody": {"required": True, "content": content}}


ScoreThreshold = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, description="keep scores >= this (default: the model's score_thresh)"),
]
MaxDetections = Annotated[
    int | None, Query(ge=0, le=100_000, description="keep at most this many, best first")
]
Classes = Annotated[
    list[str] | None,
    Query(description="keep only these class names (repeat, or separate with commas)"),
]


async def _read_images(request: Request, field: str, max_images: int) -> list[tuple[str, bytes]]:
    """The request's images as ``(name, bytes)``: multipart ``field`` parts or a raw body."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=max_images, max_fields=_MAX_FORM_FIELDS)
        except StarletteHTTPException as exc:
            if "Too many files" in str(exc.detail):
                raise ApiError(
                    413,
                    "payload_too_large",
                    f"more than {max_images} image(s) in one request; the limit is {max_images}",
                ) from None
            raise
        try:
            parts = form.getlist(field)
            if any(not isinstance(part, UploadFile) for part in parts):
                raise ApiError(422, "invalid_parameter", f"form field {field!r} must be a file")
            if not parts:
                raise ApiError(
                    422, "invalid_parameter", f"no image: send it as multipart file field {field!r}"
                )
            uploads = [part for part in parts if isinstance(part, UploadFile)]
            return [(u.filename or f"{field}[{i}]", await u.read()) for i, u in enumerate(uploads)]
        finally:
            await form.close()
    if max_images == 1 and (media.startswith("image/") or media in _RAW_TYPES):
        return [("body", await request.body())]
    expected = f"multipart/form-data with file field {field!r}"
    if max_images == 1:
        expected += " or a raw image body with an image/* Content-Type"
    raise ApiError(415, "unsupported_media_type", f"got Content-Type {media!r}; send {expected}")


def _filter(score: float | None, top: int | None, classes: list[str] | None) -> dict[str, Any]:
    return {"score_threshold": score, "max_detections": top, "classes": classes}


detect_router = APIRouter(prefix="/v1", tags=["detect"], dependencies=[ApiKeyDep])


@detect_router.post(
    "/detect",
    response_model=DetectResponse,
    responses=_ERRORS,
    openapi_extra=_upload_body("image", many=False),
)
async def detect(
    request: Request,
    service: ServiceDep,
    score_threshold: ScoreThreshold = None,
    max_detections: MaxDetections = None,
    classes: Classes = None,
) -> dict[str, Any]:
    """Detect objects in one image (multipart field ``image``, or a raw ``image/*`` body).

    Boxes are in the original image's pixels, after EXIF orientation.
    """
    images = await _read_images(request, "image", 1)
    keep = _filter(score_threshold, max_detections, classes)
    results = await service.detect([d for _, d in images], [n for n, _ in images], keep)
    return results[0]


@detect_router.post(
    "/detect/batch",
    response_model=BatchResponse,
    responses=_ERRORS,
    openapi_extra=_upload_body("images", many=True),
)
async def detect_batch(
    request: Request,
    service: ServiceDep,
    score_threshold: ScoreThreshold = None,
    max_detections: MaxDetections = None,
    classes: Classes = None,
) -> dict[str, Any]:
    """Detect objects in several images (repeated multipart field ``images``), in order.

    The request fails as a whole if any image is unusable; the error names that image.
    """
    images = await _read_images(request, "images", service.settings.max_batch_images)
    keep = _filter(score_threshold, max_detections, classes)
    results = await service.detect([d for _, d in images], [n for n, _ in images], keep)
    return {"results": results}


model_router = APIRouter(prefix="/v1", tags=["model"])


@model_router.get("/model", response_model=ModelInfo)
async def get_model(service: ServiceDep) -> dict[str, Any]:
    """The served model's metadata (classes, input size, head, backbone, mAP, provider)."""
    return model_info(service.runner, service.last_reload_error)


admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[ApiKeyDep])


@admin_router.post("/reload", response_model=ReloadResponse, responses=_ERRORS)
async def reload_model(service: ServiceDep) -> dict[str, Any]:
    """Load the configured model file again; swap it in once it is checked and warm.

    On failure (422 ``reload_failed``) the previous model keeps serving and the detail
    says why. The same happens on SIGHUP.
    """
    return await service.reload()
