"""Operational routes: liveness, readiness, Prometheus metrics and the upload page."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prodet.serve.metrics import ServiceMetrics
from prodet.serve.schemas import Status
from prodet.serve.service import Service

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
    responses={503: {"model": Status, "description": "not ready"}},
)
async def readyz(request: Request) -> Any:
    """A checked, warmed-up model is loaded and requests are being batched."""
    service = _service(request)
    if service is None or not service.ready:
        return JSONResponse({"status": "not_ready"}, status_code=503, headers={"Retry-After": "1"})
    return {"status": "ready", "model_version": service.runner.version}


@ops_router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@ops_router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    """The upload page: pick a product photo, see the boxes."""
    return HTMLResponse(_INDEX_HTML)
