"""Every error the service answers is JSON ``{"error": code, "detail": message}``.

Domain exceptions map to status codes here, in one table, so routes just raise:
not an image 415, damaged image 400, too large 413, bad parameters 422, no or wrong API
key 401, queue full 503 with Retry-After, per-request timeout 504. Anything unexpected is
a 500 whose detail does not leak internals (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from prodet.annotations.image_decode import (
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from prodet.serve.batcher import BatcherClosedError, InferenceTimeoutError, QueueFullError

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    detail: str


class ApiError(Exception):
    """An error with its HTTP status, raised by routes and dependencies."""

    def __init__(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def error_response(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON response for an error."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, *, retry_after_s: int) -> None:
    """Register the JSON error handlers on ``app``."""
    retry = {"Retry-After": str(retry_after_s)}
    simple: dict[type[Exception], tuple[int, str, dict[str, str] | None]] = {
        UnsupportedImageError: (415, "unsupported_media_type", None),
        CorruptImageError: (400, "bad_image", None),
        ImageTooLargeError: (413, "payload_too_large", None),
        QueueFullError: (503, "overloaded", retry),
        InferenceTimeoutError: (504, "timeout", retry),
        BatcherClosedError: (503, "shutting_down", retry),
    }

    def make_handler(
        status: int, error: str, headers: dict[str, str] | None
    ) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return error_response(status, error, str(exc), headers)

        return handler

    for exc_type, (status, error, headers) in simple.items():
        app.add_exception_handler(exc_type, make_handler(status, error, headers))

    # The decorator registers the handler like add_exception_handler; Starlette types that
    # method's handler as taking any Exception, so a handler of a subclass would not check.
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_parameter", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error_response(
            exc.status_code, _status_code_name(exc.status_code), str(exc.detail), headers
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", f"the server failed ({type(exc).__name__}); see its log"
        )

    app.add_exception_handler(Exception, unexpected)
