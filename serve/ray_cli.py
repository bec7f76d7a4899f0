"""``prodet serve --ray``: the service as Ray Serve replicas, in the foreground.

The model is loaded and checked here first (exit 1 before any cluster is touched), then
the cluster is joined or a local one started, the application deployed, and the command
waits until every replica runs, prints the URL and keeps watching. Ctrl-C or SIGTERM
stops it: the application is deleted, and a local cluster it started is shut down.

Exit status: 2 for settings that cannot work (Ray not installed, ``--port 0``); 1 for a
model that cannot be served, a cluster that cannot be reached (the message names the
address tried) or is too small, or a failed deployment; 0 after a clean stop.
"""

from __future__ import annotations

import signal
import sys

from prodet.serve.model_runner import ModelLoadError
from prodet.serve.ray_options import CLUSTER_EXTRA, RayOptions, replica_settings
from prodet.serve.settings import Settings


def _say(message: str) -> None:
    print(f"prodet serve: {message}", file=sys.stderr)


def serve_on_ray(settings: Settings, options: RayOptions) -> int:
    """Deploy on Ray Serve and serve until interrupted; returns the exit status."""
    if settings.port == 0:
        _say("--ray needs a fixed --port: Ray Serve's proxy cannot pick a free one")
        return 2
    try:
        import ray  # noqa: F401  (only whether it is installed)
        from ray import serve  # noqa: F401
    except ImportError as exc:
        missing = exc.name or str(exc)
        _say(
            f"--ray needs Ray Serve, which is not installed ({missing!r} is missing); "
            f"install the cluster extra: {CLUSTER_EXTRA}"
        )
        return 2
    from prodet.serve.ray_cluster import (
        RayClusterError,
        check_capacity,
        connect,
        deploy,
        leave,
        replica_summary,
        start_http,
        wait_until_ready,
        watch,
    )
    from prodet.serve.ray_serve import build_application
    from prodet.serve.service import load_runner

    try:
        runner = load_runner(replica_settings(settings, options))
    except ModelLoadError as exc:
        _say(str(exc))
        return 1
    _say(f"{runner.model_id} version {runner.version} checked; each replica loads its own")
    del runner
    try:
        cluster = connect(options.ray_address)
    except RayClusterError as exc:
        _say(str(exc))
        return 1
    # Ray's driver turns SIGTERM into sys.exit; make it a Ctrl-C so the cleanup below runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    status = 0
    try:
        if cluster.started_here:
            check_capacity(options)
        url = start_http(settings)
        deploy(build_application(settings, options), options.ray_app_name)
        wait_until_ready(options.ray_app_name, options.ray_ready_timeout_s)
        scaling = (
            f"autoscaling {options.initial_replicas}-{options.max_replicas}"
            if options.autoscaling
            else f"{options.initial_replicas} replica(s)"
        )
        _say(
            f"serving on {url} with Ray Serve on the "
            f"{cluster.address} cluster, {scaling} ({replica_summary(options.ray_app_name)}); "
            "Ctrl-C stops"
        )
        watch(options.ray_app_name)
    except KeyboardInterrupt:
        _say("stopping")
    except RayClusterError as exc:
        _say(str(exc))
        status = 1
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short and leave Ray running.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.SIG_IGN)
        leave(cluster, options.ray_app_name)
    return status
