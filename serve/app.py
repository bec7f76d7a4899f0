"""``create_app(settings)``: the FastAPI application, its middleware and its lifespan.

Start-up loads and warms the model (unless a loaded ``ModelRunner`` is passed in, as
``prodet serve`` does so that a broken model stops it before it binds the port), starts
the micro-batcher, and on Unix installs a SIGHUP handler that hot-reloads the model.
A Ray Serve replica (``serve/ray_serve.py``) builds the same app with an extra readiness
condition and a response header naming the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from prodet import __version__
from prodet.serve.body_limit import BodyLimitMiddleware
from prodet.serve.errors import ApiError, install_error_handlers
from prodet.serve.metrics import MetricsMiddleware, ServiceMetrics
from prodet.serve.model_runner import ModelRunner
from prodet.serve.ops import ReadinessCheck, ops_router
from prodet.serve.response_headers import ResponseHeadersMiddleware
from prodet.serve.routes import admin_router, detect_router, model_router
from prodet.serve.service import Service, load_runner
from prodet.serve.settings import Settings

logger = logging.getLogger(__name__)


def _install_sighup(service: Service) -> None:
    """Reload on SIGHUP when running in the main thread of a Unix process (not in tests)."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        with contextlib.suppress(ApiError):  # logged; the old model keeps serving
            await service.reload()

    def on_sighup() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)


def create_app(
    settings: Settings,
    runner: ModelRunner | None = None,
    *,
    readiness: ReadinessCheck | None = None,
    headers: Mapping[str, str] | None = None,
) -> FastAPI:
    """The service for ``settings``.

    Args:
        settings: the validated settings.
        runner: an already loaded model, if any (else start-up loads it).
        readiness: a further condition of ``/readyz`` beyond this app's own model and
            batcher (a Ray Serve replica: every replica of the deployment is running).
        headers: added to every response (a Ray Serve replica: its name and pid).
    """
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = runner if runner is not None else await asyncio.to_thread(load_runner, settings)
        service = Service(settings, loaded, metrics)
        service.batcher.start()
        app.state.service = service
        _install_sighup(service)
        logger.info("serving %s version %s on %s", loaded.model_id, loaded.version, loaded.provider)
        try:
            yield
        finally:
            await service.batcher.stop()

    app = FastAPI(
        title="prodet",
        version=__version__,
        summary="Product detection: upload an image, get labelled boxes.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.readiness = readiness
    install_error_handlers(app, retry_after_s=settings.retry_after_s)
    for router in (ops_router, detect_router, model_router, admin_router):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if headers:
        app.add_middleware(ResponseHeadersMiddleware, headers=headers)
    return app
