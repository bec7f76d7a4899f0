"""Fixtures for the service tests: the tiny Contract-3 model, settings, clients, images."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from prodet.export.onnx_contract import Detections
from prodet.serve.app import create_app
from prodet.serve.model_runner import ModelRunner
from prodet.serve.settings import Settings
from tests.serve.tiny_model import save_model

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_prodet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's PRODET_* variables out of the tests."""
    for name in list(os.environ):
        if name.startswith("PRODET_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (letterbox, 64 px, classes bottle and can), shared read-only."""
    return save_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def make_settings(model: Path, **overrides: Any) -> Settings:
    """Settings for tests: CPU, one onnxruntime thread, a short batching wait."""
    values: dict[str, Any] = {
        "model": model,
        "provider": "cpu",
        "intra_op_threads": 1,
        "max_wait_ms": 2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client(model_path: Path) -> Iterator[TestClient]:
    """A TestClient on a service with default limits."""
    with TestClient(create_app(make_settings(model_path))) as test_client:
        yield test_client


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield an async client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


class GatedRunner(ModelRunner):
    """A real runner whose ``run`` waits until ``gate`` is set (``entered`` says it began)."""

    def __init__(self, inner: ModelRunner) -> None:
        super().__init__(inner.session, inner.metadata, inner.path, inner.sha256)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def run(self, images: np.ndarray) -> list[Detections]:
        self.entered.set()
        if not self.gate.wait(timeout=10):
            raise TimeoutError("test gate never opened")
        return super().run(images)


def encode(image: Image.Image, image_format: str = "PNG", **save_args: Any) -> bytes:
    """``image`` encoded in ``image_format``."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def solid(width: int, height: int, value: int = 255, image_format: str = "PNG") -> bytes:
    """A uniform RGB image of gray level ``value``, encoded."""
    return encode(Image.new("RGB", (width, height), (value,) * 3), image_format)


def upload(data: bytes, name: str = "photo.png", field: str = "image") -> dict[str, Any]:
    """``files=`` for a multipart upload of one image."""
    return {field: (name, data, "application/octet-stream")}


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Check an error response's status and JSON shape; return the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == error, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body
