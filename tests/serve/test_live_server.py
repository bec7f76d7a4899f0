"""A real ``prodet serve`` process: concurrent clients, micro-batching, SIGHUP, start-up checks."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from prodet.live_server import clean_environment, live_server, serve_command
from tests.serve.conftest import solid
from tests.serve.tiny_model import save_model

WHITE, BLACK = solid(64, 48, 255), solid(64, 48, 0)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


async def _hammer(url: str, clients: int, per_client: int) -> list[tuple[int, int, int]]:
    """``clients`` httpx clients sending ``per_client`` requests each, all at once.

    Returns ``(status, expected detections, detections)`` per request.
    """

    async def one_client(index: int) -> list[tuple[int, int, int]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def one(j: int) -> tuple[int, int, int]:
                white = (index + j) % 2 == 0
                files = {"image": ("x.png", WHITE if white else BLACK, "image/png")}
                response = await client.post("/v1/detect", files=files)
                count = len(response.json().get("detections", [])) if response.is_success else -1
                return response.status_code, 3 if white else 0, count

            return list(await asyncio.gather(*(one(j) for j in range(per_client))))

    per = await asyncio.gather(*(one_client(i) for i in range(clients)))
    return [answer for answers in per for answer in answers]


def test_concurrent_clients_are_batched_and_sighup_reloads(
    model_path: Path, tmp_path: Path
) -> None:
    served = Path(shutil.copy(model_path, tmp_path / "live.onnx"))
    env = {"PRODET_MODEL": str(served), "PRODET_MAX_WAIT_MS": "25"}
    args = ("--provider", "cpu", "--max-batch", "8", "--intra-op-threads", "1")
    with live_server(tmp_path / "server.log", *args, env=env) as server:
        answers = asyncio.run(_hammer(server.url, clients=8, per_client=4))
        assert [status for status, _, _ in answers] == [200] * 32
        assert all(expected == got for _, expected, got in answers)  # each got its own answer
        metrics = httpx.get(f"{server.url}/metrics").text
        assert _metric(metrics, "prodet_batch_size_sum") == 32
        batches = _metric(metrics, "prodet_batch_size_count")
        assert batches < 32, "concurrent requests were never batched together"
        assert 'prodet_http_requests_total{method="POST",route="/v1/detect",status="200"} 32.0' in (
            metrics
        )

        old = httpx.get(f"{server.url}/v1/model").json()["model_version"]
        save_model(served, classes='["__background__", "bottle", "can", "jar"]')
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/v1/model").json()["model_version"] == old:
            assert time.monotonic() < deadline, "SIGHUP did not reload the model"
            time.sleep(0.1)
        assert httpx.get(f"{server.url}/v1/model").json()["classes"][-1] == "jar"
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see it.
        assert server.stop() in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log.read_text()


def _run_serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        serve_command(*args),
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_require_gpu_refuses_to_start_without_cuda(model_path: Path) -> None:
    result = _run_serve("--model", str(model_path), "--provider", "cpu", "--require-gpu")
    assert result.returncode == 1
    assert "--require-gpu" in result.stderr and "CPUExecutionProvider" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "model: Field required (use --model or PRODET_MODEL)"),
        (("--max-batch", "0"), {"PRODET_MODEL": "m.onnx"}, "max_batch"),
        (("--model", "m.onnx"), {"PRODET_API_KEY": "short"}, "at least 16 characters"),
    ],
)
def test_bad_settings_exit_2(args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    result = _run_serve(*args, **env)
    assert result.returncode == 2 and message in result.stderr


def test_missing_model_exits_1(tmp_path: Path) -> None:
    result = _run_serve("--model", str(tmp_path / "nope.onnx"))
    assert result.returncode == 1 and "cannot read model file" in result.stderr
