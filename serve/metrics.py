"""Prometheus metrics of one service instance, in their own registry.

A registry per app (not prometheus-client's global one) lets tests build several apps in
one process. ``MetricsMiddleware`` counts every HTTP request by route template (never the
raw path, whose cardinality a client controls), method and status.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prodet.serve.model_runner import ModelRunner

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The service's metrics (names start with ``prodet_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "prodet_http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "prodet_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "prodet_batch_size",
            "images per inference batch",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "prodet_inference_duration_seconds",
            "time in session.run per batch",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "prodet_queue_depth", "images waiting for a batch", registry=self.registry
        )
        self.images = Counter(
            "prodet_images", "images answered by the model", registry=self.registry
        )
        self.reloads = Counter(
            "prodet_model_reloads",
            "hot reloads by result",
            ["result"],
            registry=self.registry,
        )
        self.model = Info("prodet_model", "the model being served", registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one ``session.run`` of ``size`` images."""
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.images.inc(size)

    def set_model(self, runner: ModelRunner) -> None:
        """Publish the served model's identity and execution provider."""
        meta = runner.metadata
        self.model.info(
            {
                "model_id": runner.model_id,
                "version": runner.version,
                "provider": runner.provider,
                "head": meta.head,
                "backbone": meta.backbone,
                "precision": meta.precision,
            }
        )


class MetricsMiddleware:
    """Pure ASGI middleware recording each HTTP request's status and latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)
