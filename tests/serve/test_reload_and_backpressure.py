"""Hot reload (atomic swap, broken files, in-flight requests) and 503/504 backpressure."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from prodet.serve.app import create_app
from prodet.serve.model_runner import ModelRunner
from tests.serve.conftest import (
    API_KEY,
    GatedRunner,
    assert_error,
    make_settings,
    running_app,
    solid,
    upload,
)
from tests.serve.tiny_model import save_model

NEW_CLASSES = '["__background__", "bottle", "can", "box"]'


@pytest.fixture
def own_model(model_path: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model that a test may overwrite."""
    return Path(shutil.copy(model_path, tmp_path / "served.onnx"))


def test_reload_swaps_in_a_new_model(own_model: Path) -> None:
    with TestClient(create_app(make_settings(own_model))) as client:
        old = client.get("/v1/model").json()["model_version"]
        save_model(own_model, classes=NEW_CLASSES, exporter="v2")
        response = client.post("/v1/admin/reload")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "reloaded" and body["previous_version"] == old
        new = body["model"]["model_version"]
        assert new != old and body["model"]["classes"][-1] == "box"
        assert client.get("/v1/model").json()["model_version"] == new
        detected = client.post("/v1/detect", files=upload(solid(32, 32))).json()
        assert detected["model_version"] == new
        metrics = client.get("/metrics").text
        assert 'prodet_model_reloads_total{result="ok"} 1.0' in metrics
        assert f'version="{new}"' in metrics


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("junk", "not a loadable ONNX model"),
        ("no-metadata", "lacks 'classes'"),
        ("missing", "cannot read"),
        ("bad-outputs", "warm-up"),
    ],
)
def test_a_broken_file_leaves_the_old_model_serving(
    own_model: Path, breakage: str, reason: str
) -> None:
    with TestClient(create_app(make_settings(own_model))) as client:
        old = client.get("/v1/model").json()["model_version"]
        if breakage == "junk":
            own_model.write_bytes(b"\x08\x01garbage" * 50)
        elif breakage == "no-metadata":
            save_model(own_model, classes=None)
        elif breakage == "missing":
            own_model.unlink()
        else:
            save_model(own_model, count_offset=4)
        body = assert_error(client.post("/v1/admin/reload"), 422, "reload_failed")
        assert reason in body["detail"] and f"still serving served version {old}" in body["detail"]
        info = client.get("/v1/model").json()
        assert info["model_version"] == old and reason in info["last_reload_error"]
        answer = client.post("/v1/detect", files=upload(solid(32, 32)))
        assert answer.status_code == 200 and answer.json()["model_version"] == old
        assert client.get("/readyz").status_code == 200
        assert 'prodet_model_reloads_total{result="failed"} 1.0' in client.get("/metrics").text


def test_in_flight_requests_finish_on_the_old_model(own_model: Path) -> None:
    settings = make_settings(own_model, max_wait_ms=0, api_key=API_KEY)
    gated = GatedRunner(ModelRunner.load(own_model, provider="cpu"))
    app = create_app(settings, gated)
    auth = {"X-API-Key": API_KEY}

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with running_app(app) as client:
            before = asyncio.create_task(
                client.post("/v1/detect", files=upload(solid(32, 32)), headers=auth)
            )
            await asyncio.to_thread(gated.entered.wait, 5)  # its batch is inside session.run
            save_model(own_model, classes=NEW_CLASSES)
            reload = await client.post("/v1/admin/reload", headers=auth)
            after = asyncio.create_task(
                client.post("/v1/detect", files=upload(solid(32, 32)), headers=auth)
            )
            await asyncio.sleep(0.05)
            gated.gate.set()
            return reload, await before, await after

    reload, before, after = asyncio.run(scenario())
    assert reload.status_code == 200, reload.text
    assert before.json()["model_version"] == gated.version
    assert after.json()["model_version"] == reload.json()["model"]["model_version"]
    assert gated.version != after.json()["model_version"]


def test_full_queue_is_503_with_retry_after(model_path: Path) -> None:
    settings = make_settings(
        model_path, max_batch=1, max_queue=1, max_batch_images=1, retry_after_s=3
    )
    gated = GatedRunner(ModelRunner.load(model_path, provider="cpu"))
    app = create_app(settings, gated)

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with running_app(app) as client:
            first = asyncio.create_task(client.post("/v1/detect", files=upload(solid(8, 8))))
            await asyncio.to_thread(gated.entered.wait, 5)
            refused = await client.post("/v1/detect", files=upload(solid(8, 8)))
            gated.gate.set()
            answered = await first
            later = await client.post("/v1/detect", files=upload(solid(8, 8)))
            return refused, answered, later

    refused, answered, later = asyncio.run(scenario())
    assert_error(refused, 503, "overloaded")
    assert refused.headers["retry-after"] == "3"
    assert answered.status_code == later.status_code == 200


def test_slow_inference_is_504(model_path: Path) -> None:
    settings = make_settings(model_path, request_timeout_s=0.2)
    gated = GatedRunner(ModelRunner.load(model_path, provider="cpu"))
    app = create_app(settings, gated)

    async def scenario() -> httpx.Response:
        async with running_app(app) as client:
            response = await client.post("/v1/detect", files=upload(solid(8, 8)))
            gated.gate.set()
            return response

    response = asyncio.run(scenario())
    assert_error(response, 504, "timeout")
    assert "0.2 s" in response.json()["detail"]
