"""The service as a Ray Serve deployment: ``ProdetReplica``, its readiness, its builders.

Each replica builds the very app plain ``prodet serve`` runs (``create_app``: the same
routes, schemas, limits, API key, metrics and upload page) on its own onnxruntime
session, ``Service`` and micro-batcher. The constructor loads, checks and warms up the
model; Ray Serve 2.60 then calls ``__serve_build_asgi_app__`` and runs the app's lifespan
in the replica (``UserCallableWrapper._initialize_asgi_callable``), which starts the
batcher, all before the replica counts as running; the lifespan's shutdown stops the
batcher when the replica stops.

A replica adds two things to the app: ``/readyz`` also asks the Serve controller whether
every replica of the deployment runs (503 with the replicas' states until then), and
every response it makes carries ``X-Prodet-Replica`` (Ray's replica id) and
``X-Prodet-Replica-Pid``. Responses that Ray's proxy makes up itself, such as the 500 for
a request whose replica died, carry neither.

``build_application`` is what ``prodet serve --ray`` deploys; ``app_builder`` is the same
for a Serve config file (``serve deploy``, KubeRay's RayService ``serveConfigV2``):
``import_path: prodet.serve.ray_serve:app_builder``. Ray is imported inside functions, so
importing this module needs no Ray.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from prodet.serve.app import create_app
from prodet.serve.model_runner import ModelRunner
from prodet.serve.ray_options import RayOptions, deployment_options, replica_settings
from prodet.serve.service import load_runner
from prodet.serve.settings import Settings

if TYPE_CHECKING:
    from ray.serve import Application
    from ray.serve.schema import ServeStatus

logger = logging.getLogger(__name__)

REPLICA_HEADER = "X-Prodet-Replica"
REPLICA_PID_HEADER = "X-Prodet-Replica-Pid"
# Statuses in which every replica the deployment targets is running (when downscaling,
# the extra replicas are only being stopped).
_READY_STATUSES = frozenset({"HEALTHY", "DOWNSCALING"})
# ``app_builder`` arguments that size the replicas; the rest are ``Settings`` fields.
_REPLICA_ARGS = frozenset(
    {
        "replicas",
        "min_replicas",
        "max_replicas",
        "target_ongoing_requests",
        "max_ongoing_requests",
        "replica_cpus",
        "replica_gpus",
    }
)


def deployment_readiness(status: ServeStatus, app_name: str, deployment: str) -> str | None:
    """``None`` when every replica ``deployment`` targets runs, else why not.

    Ready means the deployment is ``HEALTHY`` (or ``DOWNSCALING``): while it starts,
    replaces a dead replica (``UNHEALTHY``, ``UPDATING``) or scales up, it is not.
    """
    app = status.applications.get(app_name)
    if app is None:
        return f"Ray Serve application {app_name!r} is not deployed"
    overview = app.deployments.get(deployment)
    if overview is None:
        return f"application {app_name!r} ({app.status.value}) has no deployment {deployment!r} yet"
    if overview.status.value in _READY_STATUSES:
        return None
    states = ", ".join(
        f"{count} {state}" for state, count in sorted(overview.replica_states.items())
    )
    reason = f"deployment {deployment} is {overview.status.value} (replicas: {states or 'none'})"
    return f"{reason}: {overview.message}" if overview.message else reason


class DeploymentReadiness:
    """``/readyz``'s cluster condition, asked of the Serve controller.

    A "ready" answer is reused for ``max_age_s`` (probes may come often); "not ready" is
    asked again every time, so ``/readyz`` turns 200 as soon as the last replica runs.
    """

    def __init__(self, app_name: str, deployment: str, *, max_age_s: float = 1.0) -> None:
        self.app_name = app_name
        self.deployment = deployment
        self.max_age_s = max_age_s
        self._ready_at = -math.inf
        self._lock = asyncio.Lock()

    async def __call__(self) -> str | None:
        """``None`` when every replica runs, else why not."""
        async with self._lock:
            if time.monotonic() - self._ready_at < self.max_age_s:
                return None
            # serve.status() blocks on the controller; keep the event loop serving.
            reason = await asyncio.to_thread(self._ask)
            if reason is None:
                self._ready_at = time.monotonic()
            return reason

    def _ask(self) -> str | None:
        from ray import serve

        try:
            status = serve.status()
        except Exception as exc:  # the controller may be restarting; not ready meanwhile
            return f"cannot ask the Ray Serve controller: {exc}"
        return deployment_readiness(status, self.app_name, self.deployment)


class ProdetReplica:
    """One replica: the prodet app on a model of its own (wrapped by ``serve.ingress()``)."""

    def __init__(self, settings: Settings) -> None:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        self._settings = settings
        # Loaded here rather than in the app's lifespan, so that a model the replica cannot
        # serve fails its constructor and Ray Serve reports the ModelLoadError itself.
        self._runner: ModelRunner | None = load_runner(settings)
        self._app: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The replica's app; Ray Serve runs its lifespan (which starts the batcher) next."""
        from ray import serve

        context = serve.get_replica_context()
        headers = {REPLICA_HEADER: context.replica_tag, REPLICA_PID_HEADER: str(os.getpid())}
        readiness = DeploymentReadiness(context.app_name, context.deployment)
        runner, self._runner = self._runner, None  # the app's Service holds it from now on
        self._app = create_app(self._settings, runner, readiness=readiness, headers=headers)
        logger.info("replica %s (pid %d) builds its app", context.replica_tag, os.getpid())
        return self._app

    async def check_health(self) -> None:
        """Ray Serve's periodic health check: fail once the micro-batcher stopped.

        Raises:
            RuntimeError: the batcher is not running; the controller replaces the replica.
        """
        service = getattr(self._app.state, "service", None) if self._app else None
        if service is None or not service.ready:
            raise RuntimeError("the micro-batcher is not running")


def build_application(settings: Settings, options: RayOptions) -> Application:
    """The Serve application of ``ProdetReplica`` replicas that ``options`` describe."""
    from ray import serve

    ingress = serve.ingress()(ProdetReplica)
    deployment = serve.deployment(**deployment_options(settings, options))(ingress)
    return deployment.bind(replica_settings(settings, options))


def app_builder(args: dict[str, Any]) -> Application:
    """The application for a Serve config file's ``import_path`` and ``args``.

    Args:
        args: ``Settings`` fields (``model`` at least; ``PRODET_*`` variables of the node
            that builds the application fill in the rest, as for ``prodet serve``) and
            the replica fields of ``RayOptions`` (``replicas``, ``min_replicas``,
            ``max_replicas``, ``target_ongoing_requests``, ``max_ongoing_requests``,
            ``replica_cpus``, ``replica_gpus``).

    Raises:
        ValueError: an argument that is neither, or values the settings refuse.
    """
    unknown = sorted(set(args) - set(Settings.model_fields) - _REPLICA_ARGS)
    if unknown:
        raise ValueError(
            f"unknown prodet arguments {unknown}; give Settings fields (prodet serve's "
            f"options with '_' for '-') or {sorted(_REPLICA_ARGS)}"
        )
    settings = Settings(**{k: v for k, v in args.items() if k not in _REPLICA_ARGS})
    options = RayOptions(ray=True, **{k: v for k, v in args.items() if k in _REPLICA_ARGS})
    return build_application(settings, options)
