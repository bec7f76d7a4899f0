"""The options of ``prodet serve --ray``: which Ray cluster, how many replicas, of what size.

Plain ``prodet serve`` uses none of them. Like ``Settings``, each is also an environment
variable, ``PRODET_`` plus the name in capitals (``PRODET_RAY_ADDRESS``,
``PRODET_REPLICAS``, ...). This module does not import Ray: the options are validated,
and turned into Ray Serve's deployment options, before Ray is needed.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prodet.serve.parallelism import plan_parallelism
from prodet.serve.settings import Settings

CLUSTER_EXTRA = "pip install 'prodet[cluster]'"
DEPLOYMENT_NAME = "ProdetReplica"
# The controller asks each replica for its health this often (Ray's default is 10 s): a
# replica that stopped batching is replaced within seconds rather than tens of seconds.
HEALTH_CHECK_PERIOD_S = 2.0
HEALTH_CHECK_TIMEOUT_S = 10.0
# A replica whose model cannot load fails the deployment after this many tries instead of
# Ray's 20, so a model file missing on the cluster's nodes is reported within a minute.
MAX_CONSTRUCTOR_RETRIES = 3


class RayOptions(BaseSettings):
    """How ``prodet serve --ray`` runs on Ray Serve (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="PRODET_", frozen=True, extra="forbid")

    ray: bool = Field(
        False,
        description=f"serve with Ray Serve replicas, one model each (needs {CLUSTER_EXTRA})",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join: 'auto' (one started with `ray start` on this "
        "machine), ray://HOST:PORT (Ray Client) or HOST:PORT (the head's GCS); "
        "none starts a local Ray cluster for as long as the command runs",
    )
    ray_app_name: str = Field(
        "prodet", min_length=1, description="the Ray Serve application's name"
    )
    replicas: int | None = Field(
        None, ge=1, description="a fixed number of replicas (1 when not autoscaling)"
    )
    min_replicas: int | None = Field(
        None, ge=1, description="autoscaling: the fewest replicas (with --max-replicas)"
    )
    max_replicas: int | None = Field(None, ge=1, description="autoscaling: the most replicas")
    target_ongoing_requests: float | None = Field(
        None,
        gt=0,
        description="autoscaling: requests queued or running per replica to aim for "
        "(default: max_batch, one full batch waiting)",
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="requests one replica holds at a time; more wait in Ray's proxy "
        "(default: max_queue)",
    )
    replica_cpus: float = Field(
        1.0,
        gt=0,
        description="CPUs reserved per replica; its inference streams and onnxruntime "
        "threads are planned for them unless given",
    )
    replica_gpus: float = Field(
        0.0,
        ge=0,
        description="GPUs per replica: 1 gives each replica, and its onnxruntime session, "
        "a GPU of its own; a fraction shares one",
    )
    ray_ready_timeout_s: float = Field(
        300.0, gt=0, description="how long to wait for every replica to run"
    )

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> RayOptions:
        if self.replicas is not None and (
            self.min_replicas is not None or self.max_replicas is not None
        ):
            raise ValueError(
                "give either --replicas N or --min-replicas A --max-replicas B, not both"
            )
        if self.min_replicas is not None and self.max_replicas is None:
            raise ValueError("--min-replicas needs --max-replicas")
        if self.max_replicas is not None and self.max_replicas < (self.min_replicas or 1):
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be at least min_replicas "
                f"({self.min_replicas})"
            )
        if self.target_ongoing_requests is not None and self.max_replicas is None:
            raise ValueError("--target-ongoing-requests is for autoscaling (--max-replicas)")
        return self

    @property
    def autoscaling(self) -> bool:
        """Whether the replica count follows the load."""
        return self.max_replicas is not None

    @property
    def initial_replicas(self) -> int:
        """The replicas started first (the fixed count, or the autoscaling minimum)."""
        return self.replicas or self.min_replicas or 1

    def cluster_only_fields(self) -> list[str]:
        """The options given (by flag or environment) that only ``--ray`` uses."""
        return sorted(name for name in self.model_fields_set if name != "ray")


def replica_settings(settings: Settings, options: RayOptions) -> Settings:
    """``settings`` for one replica: its streams and onnxruntime threads fit its CPUs.

    Explicit ``inference_streams`` and ``intra_op_threads`` are kept; those left at 0 are
    planned (``serve.parallelism``) for the whole CPUs the replica reserves, at least one,
    not for the host's cores, so replicas sharing a machine do not oversubscribe it.
    """
    plan = plan_parallelism(
        max(1, int(options.replica_cpus)),
        streams=settings.inference_streams,
        intra_op_threads=settings.intra_op_threads,
        on_gpu=options.replica_gpus > 0,
    )
    return settings.model_copy(
        update={"intra_op_threads": plan.intra_op_threads, "inference_streams": plan.streams}
    )


def deployment_options(settings: Settings, options: RayOptions) -> dict[str, Any]:
    """Keyword arguments of ``serve.deployment`` for the replicas ``options`` ask for.

    Autoscaling follows Ray Serve's ongoing requests (queued in the replica or running) per
    replica: ``target_ongoing_requests`` defaults to ``max_batch``. A replica takes up to
    ``max_queue`` requests by default, its own admission limit, so a batch can fill and
    the replica's 503 answers stay the backpressure clients see.
    """
    actor_options: dict[str, Any] = {"num_cpus": options.replica_cpus}
    if options.replica_gpus:
        actor_options["num_gpus"] = options.replica_gpus
    values: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor_options,
        "max_ongoing_requests": options.max_ongoing_requests or settings.max_queue,
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
        "graceful_shutdown_timeout_s": settings.request_timeout_s + 1,
        "max_constructor_retry_count": MAX_CONSTRUCTOR_RETRIES,
        # Ray Serve's replica log, with a line per request as uvicorn's access log has
        # at the info level and below.
        "logging_config": {
            "log_level": settings.log_level.upper(),
            "enable_access_log": settings.log_level in ("info", "debug"),
        },
    }
    if options.autoscaling:
        values["autoscaling_config"] = {
            "min_replicas": options.initial_replicas,
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_ongoing_requests or settings.max_batch,
        }
    else:
        values["num_replicas"] = options.initial_replicas
    return values
