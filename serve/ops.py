"""Operational routes: liveness, readiness, Prometheus metrics and the upload page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prodet.serve.metrics import ServiceMetrics
from prodet.serve.schemas import Status
from prodet.serve.service import Service

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""A further condition of ``/readyz``: ``None`` when met, else why not."""

ops_router = APIRouter(tags=["operations"])

_INDEX_HTML = resources.files("prodet.serve").joinpath("static", "index.html").read_text("utf-8")


def _service(request: Request) -> Service | None:
    return getattr(request.app.state, "service", None)


@ops_router.get("/healthz", response_model=Status, response_model_exclude_none=True)
async def healthz() -> dict[str, Any]:
    """The process is alive and answering."""
    return {"status": "alive"}


@ops_router.get(
    "/readyz",
    response_model=Status,
    response_model_exclude_none=True,
    responses={503: {"model": Status, "description": "not ready"}},
)
async def readyz(request: Request) -> Any:
    """A checked, warmed-up model is loaded and requests are being batched.

    Under Ray Serve (``prodet serve --ray``) also: every replica of the deployment runs.
    """
    service = _service(request)
    if service is None or not service.ready:
        return _not_ready(None)
    readiness: ReadinessCheck | None = getattr(request.app.state, "readiness", None)
    if readiness is not None and (reason := await readiness()) is not None:
        return _not_ready(reason)
    return {"status": "ready", "model_version": service.runner.version}


def _not_ready(reason: str | None) -> JSONResponse:
    body = {"status": "not_ready"} if reason is None else {"status": "not_ready", "detail": reason}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


@ops_router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@ops_router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    """The upload page: pick a product photo, see the boxes."""
    return HTMLResponse(_INDEX_HTML)
