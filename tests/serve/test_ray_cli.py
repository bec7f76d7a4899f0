"""``prodet serve --ray`` without a cluster: its options, their mapping to Ray Serve, and the
messages for bad input (Ray missing, a cluster that cannot be reached), never a traceback.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from prodet import serve
from prodet.live_server import clean_environment, free_port, serve_command
from prodet.serve.app import create_app
from prodet.serve.cli import serve_main
from prodet.serve.ray_options import RayOptions, deployment_options, replica_settings
from prodet.serve.ray_serve import app_builder, deployment_readiness
from tests.serve.conftest import make_settings


def test_plain_serve_never_imports_ray(tmp_path: Path) -> None:
    modules = sorted(f"prodet.serve.{m.name}" for m in pkgutil.iter_modules(serve.__path__))
    assert {"prodet.serve.ray_serve", "prodet.serve.ray_cluster", "prodet.serve.ray_cli"} <= set(
        modules
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import prodet.commands, prodet.live_server\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fixed_replicas_map_to_ray_serve_options(model_path: Path) -> None:
    settings = make_settings(model_path, intra_op_threads=0, max_queue=48)
    options = RayOptions(ray=True, replicas=3, replica_cpus=2.5, replica_gpus=0.5)
    values = deployment_options(settings, options)
    assert values["num_replicas"] == 3 and "autoscaling_config" not in values
    assert values["ray_actor_options"] == {"num_cpus": 2.5, "num_gpus": 0.5}
    assert values["max_ongoing_requests"] == 48  # the replica's own admission limit
    assert values["logging_config"] == {"log_level": "INFO", "enable_access_log": True}
    quiet = make_settings(model_path, log_level="warning")
    assert deployment_options(quiet, options)["logging_config"]["enable_access_log"] is False
    # Streams and onnxruntime threads follow the replica's whole CPUs, unless given.
    on_gpu = replica_settings(settings, options)
    assert (on_gpu.inference_streams, on_gpu.intra_op_threads) == (1, 2)
    on_cpu = replica_settings(settings, RayOptions(replica_cpus=2.5))
    assert (on_cpu.inference_streams, on_cpu.intra_op_threads) == (2, 1)
    assert replica_settings(settings, RayOptions(replica_cpus=0.5)).intra_op_threads == 1
    explicit = make_settings(model_path, intra_op_threads=3)
    assert replica_settings(explicit, options).intra_op_threads == 3


def test_autoscaling_maps_to_ray_serve_options(model_path: Path) -> None:
    settings = make_settings(model_path, max_batch=4)
    options = RayOptions(ray=True, min_replicas=1, max_replicas=4, max_ongoing_requests=10)
    values = deployment_options(settings, options)
    assert "num_replicas" not in values and values["max_ongoing_requests"] == 10
    assert values["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 4,  # max_batch: one full batch waiting per replica
    }
    assert values["ray_actor_options"] == {"num_cpus": 1.0}
    only_max = RayOptions(max_replicas=2, target_ongoing_requests=3)
    assert deployment_options(settings, only_max)["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 3,
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2, "max_replicas": 3}, "not both"),
        ({"min_replicas": 2}, "--min-replicas needs --max-replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "must be at least min_replicas"),
        ({"replicas": 2, "target_ongoing_requests": 4}, "is for autoscaling"),
        ({"replica_cpus": 0}, "greater than 0"),
    ],
)
def test_inconsistent_options_are_refused(values: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RayOptions(**values)


def _serve(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = serve_main(list(argv))
    return code, capsys.readouterr().err


def test_cluster_options_need_ray(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _serve(capsys, "--model", str(model_path), "--replicas", "2")
    assert code == 2 and "--replicas only apply with --ray" in err
    code, err = _serve(capsys, "--model", str(model_path), "--ray", "--replicas", "0")
    assert code == 2 and "replicas: Input should be greater than or equal to 1" in err
    code, err = _serve(capsys, "--model", str(model_path), "--ray", "--port", "0")
    assert code == 2 and "--ray needs a fixed --port" in err


def test_ray_missing_names_the_extra(
    model_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, err = _serve(capsys, "--model", str(model_path), "--ray", "--port", "8000")
    assert code == 2
    assert "pip install 'prodet[cluster]'" in err and "Traceback" not in err


@pytest.mark.parametrize("address", ["ray://127.0.0.1:1", "127.0.0.1:1", "no-port-here"])
def test_unreachable_cluster_fails_fast_naming_the_address(model_path: Path, address: str) -> None:
    pytest.importorskip("ray", reason="the address is tried only when Ray is installed")
    args = ("--model", str(model_path), "--provider", "cpu", "--ray", "--ray-address", address)
    started = time.monotonic()
    result = subprocess.run(
        serve_command(*args, "--port", str(free_port())),
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert address in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert time.monotonic() - started < 30


def test_app_builder_refuses_unknown_arguments(model_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown prodet arguments \['replica_count'\]"):
        app_builder({"model": str(model_path), "replica_count": 2})


def test_readiness_condition_and_replica_headers(model_path: Path) -> None:
    reason: list[str | None] = ["deployment ProdetReplica is UPDATING (replicas: 1 STARTING)"]

    async def readiness() -> str | None:
        return reason[0]

    headers = {"X-Prodet-Replica": "abc123", "X-Prodet-Replica-Pid": "42"}
    app = create_app(make_settings(model_path), readiness=readiness, headers=headers)
    with TestClient(app) as client:
        waiting = client.get("/readyz")
        assert waiting.status_code == 503 and waiting.headers["Retry-After"] == "1"
        assert waiting.json() == {"status": "not_ready", "detail": reason[0]}
        reason[0] = None
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        for response in (waiting, ready, client.post("/v1/detect", content=b"x")):
            assert response.headers["X-Prodet-Replica"] == "abc123"
            assert response.headers["X-Prodet-Replica-Pid"] == "42"


@pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`:DeprecationWarning")
def test_deployment_is_ready_when_healthy_or_downscaling() -> None:
    pytest.importorskip("ray", reason="the status objects are Ray Serve's")
    from ray.serve._private.common import DeploymentStatus, DeploymentStatusTrigger
    from ray.serve.schema import (
        ApplicationStatus,
        ApplicationStatusOverview,
        DeploymentStatusOverview,
        ServeStatus,
    )

    def status(deployment: DeploymentStatus, replicas: dict[str, int]) -> ServeStatus:
        overview = DeploymentStatusOverview(
            status=deployment,
            status_trigger=DeploymentStatusTrigger.HEALTH_CHECK_FAILED,
            replica_states=replicas,  # type: ignore[arg-type]  # str keys, as serve.status()
            message="A replica's health check failed.",
        )
        app = ApplicationStatusOverview(ApplicationStatus.RUNNING, "", 0.0, {"Prodet": overview})
        return ServeStatus(applications={"prodet": app})

    healthy = status(DeploymentStatus.HEALTHY, {"RUNNING": 2})
    assert deployment_readiness(healthy, "prodet", "Prodet") is None
    assert (
        deployment_readiness(
            status(DeploymentStatus.DOWNSCALING, {"RUNNING": 2, "STOPPING": 1}), "prodet", "Prodet"
        )
        is None
    )
    replacing = status(DeploymentStatus.UNHEALTHY, {"RUNNING": 1, "STARTING": 1})
    assert deployment_readiness(replacing, "prodet", "Prodet") == (
        "deployment Prodet is UNHEALTHY (replicas: 1 RUNNING, 1 STARTING): "
        "A replica's health check failed."
    )
    upscaling = status(DeploymentStatus.UPSCALING, {"RUNNING": 2, "STARTING": 1})
    assert "UPSCALING" in (deployment_readiness(upscaling, "prodet", "Prodet") or "")
    assert deployment_readiness(healthy, "other", "Prodet") == (
        "Ray Serve application 'other' is not deployed"
    )
