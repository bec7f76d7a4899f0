"""Joining (or starting) a Ray cluster, deploying the service on it, watching it, leaving.

``prodet serve --ray`` (``serve/ray_cli.py``) calls these in order: ``connect``,
``check_capacity`` (a local cluster only), ``start_http``, ``deploy``,
``wait_until_ready``, ``watch`` until interrupted, then ``leave``. A cluster this process
started (no ``--ray-address``) is shut down on leaving; on a cluster it joined, only its
own application is deleted and Serve keeps running for the cluster's other applications.

An address that is not ``auto`` is first tried with a plain TCP connection, because
``ray.init`` takes 30 s (``ray://``) to minutes (a GCS address) to give up on a host
that does not answer.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prodet.serve.ray_options import DEPLOYMENT_NAME, RayOptions
from prodet.serve.ray_serve import deployment_readiness
from prodet.serve.settings import Settings

if TYPE_CHECKING:
    from ray.serve import Application

logger = logging.getLogger(__name__)

REACHABLE_TIMEOUT_S = 5.0


class RayClusterError(RuntimeError):
    """The cluster cannot be reached or used, or the deployment failed; says which and why."""


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster this process is connected to."""

    address: str
    started_here: bool


def check_reachable(address: str, timeout_s: float = REACHABLE_TIMEOUT_S) -> None:
    """Open and close a TCP connection to ``ray://HOST:PORT`` or ``HOST:PORT``.

    Raises:
        RayClusterError: the address is malformed or nothing answers there.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayClusterError(
            f"Ray address {address!r} is not 'auto', ray://HOST:PORT or HOST:PORT"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise RayClusterError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def connect(address: str | None) -> Cluster:
    """Join the cluster at ``address``, or start a local one when it is ``None``.

    Raises:
        RayClusterError: naming ``address``, when the cluster cannot be joined.
    """
    import ray

    quiet = logging.WARNING
    if address is None:
        try:
            ray.init(address="local", include_dashboard=False, logging_level=quiet)
        except Exception as exc:  # no space for its object store, ports in use, ...
            raise RayClusterError(f"cannot start a local Ray cluster: {exc}") from None
        return Cluster("local", started_here=True)
    if address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, logging_level=quiet)
    except ConnectionError as exc:
        if address == "auto":
            raise RayClusterError(
                "cannot join a Ray cluster at 'auto': none runs on this machine (start one "
                "with `ray start --head`, or give --ray-address ray://HOST:PORT)"
            ) from None
        raise RayClusterError(f"cannot join the Ray cluster at {address}: {exc}") from None
    except Exception as exc:  # a version mismatch, a refused token, ...: name the address
        raise RayClusterError(f"cannot join the Ray cluster at {address}: {exc}") from None
    return Cluster(address, started_here=False)


def check_capacity(options: RayOptions) -> None:
    """Refuse replicas that the (local, fixed-size) cluster could never place.

    Raises:
        RayClusterError: the first replicas need more CPUs or GPUs than the cluster has.
    """
    import ray

    resources = ray.cluster_resources()
    count = options.initial_replicas
    for name, each in (("CPU", options.replica_cpus), ("GPU", options.replica_gpus)):
        have = float(resources.get(name, 0.0))
        if each and count * each > have + 1e-9:
            raise RayClusterError(
                f"{count} replica(s) of {each:g} {name}(s) need {count * each:g} {name}s; "
                f"the local Ray cluster has {have:g}. Lower --replica-{name.lower()}s "
                "(fractions are allowed) or the replica count, or join a bigger cluster "
                "with --ray-address"
            )


def start_http(settings: Settings) -> str:
    """Start Serve with its HTTP proxies on ``settings.host:port``; returns the URL in effect.

    Serve's HTTP options belong to the cluster and are fixed when Serve first starts there:
    on a cluster where it already runs, its own host and port stay (and a warning says so).
    """
    from ray import serve

    serve.start(http_options={"host": settings.host, "port": settings.port})
    host, port = settings.host, settings.port
    try:  # the options in effect are only on Serve's (private) controller client
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        if client is not None:
            host, port = str(client.http_config.host), int(client.http_config.port)
    except Exception as exc:
        logger.debug("cannot read Serve's HTTP options: %s", exc)
    if (host, port) != (settings.host, settings.port):
        logger.warning(
            "Ray Serve already runs on this cluster with HTTP on %s:%d; --host %s --port %d "
            "do not apply",
            host,
            port,
            settings.host,
            settings.port,
        )
    return f"http://{host}:{port}"


def deploy(application: Application, app_name: str) -> None:
    """Deploy ``application`` at route ``/`` without waiting for its replicas."""
    from ray import serve

    serve.run_many(
        [serve.RunTarget(application, name=app_name, route_prefix="/")],
        wait_for_applications_running=False,
    )


def wait_until_ready(app_name: str, timeout_s: float, poll_s: float = 0.5) -> None:
    """Wait until every replica runs.

    Raises:
        RayClusterError: the deployment failed, or was not ready within ``timeout_s``.
    """
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status()
        app = status.applications.get(app_name)
        if app is not None and app.status.value == "DEPLOY_FAILED":
            overview = app.deployments.get(DEPLOYMENT_NAME)
            message = overview.message if overview is not None else app.message
            # The message ends with the replica's traceback; its last line is the error.
            lines = [line for line in message.splitlines() if line.strip()] or [app.message]
            logger.debug("deploying %s failed: %s", app_name, message)
            raise RayClusterError(f"deploying {app_name!r} on Ray failed: {lines[-1]}")
        reason = deployment_readiness(status, app_name, DEPLOYMENT_NAME)
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise RayClusterError(f"not every replica runs after {timeout_s:g} s: {reason}")
        time.sleep(poll_s)


def replica_summary(app_name: str) -> str:
    """The deployment's status and replica states, e.g. ``HEALTHY, 2 RUNNING``.

    Raises:
        RayClusterError: the application is gone.
    """
    from ray import serve

    app = serve.status().applications.get(app_name)
    overview = app.deployments.get(DEPLOYMENT_NAME) if app is not None else None
    if overview is None:
        raise RayClusterError(f"the Ray Serve application {app_name!r} was deleted")
    states = ", ".join(f"{n} {state}" for state, n in sorted(overview.replica_states.items()))
    return f"{overview.status.value}, {states or 'no replicas'}"


def watch(app_name: str, poll_s: float = 2.0) -> None:
    """Log every change of the replicas' states, until interrupted.

    Raises:
        RayClusterError: the application was deleted by someone else.
    """
    last = ""
    while True:
        summary = replica_summary(app_name)
        if summary != last:
            logger.info("replicas of %s: %s", app_name, summary)
            last = summary
        time.sleep(poll_s)


def leave(cluster: Cluster, app_name: str) -> None:
    """Shut Serve and the cluster down if this process started them; else delete the app."""
    import ray
    from ray import serve

    try:
        if cluster.started_here:
            serve.shutdown()
        else:
            serve.delete(app_name)
    except Exception as exc:  # leaving must go on: disconnect whatever happened
        logger.warning("could not stop the Ray Serve application %s: %s", app_name, exc)
    ray.shutdown()
