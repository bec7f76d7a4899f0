"""The HTTP API with TestClient: detections by hand, filters, batch, model, ops routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from prodet.serve.app import create_app
from tests.serve.conftest import API_KEY, assert_error, encode, make_settings, solid, upload
from tests.serve.tiny_model import expected_scores, save_model

# A white 128x64 image letterboxed into 64x64: scale 0.5, pad (0, 16). Half the input is
# white (normalised 2.0), half padding of colour round(0.5 * 255) = 128.
_PAD = (128 / 255 - 0.5) / 0.25
WHITE_LETTERBOX_MEAN = (2.0 + _PAD) / 2
# The model's constant boxes mapped back: x / 0.5, (y - 16) / 0.5, clipped to 128x64.
WHITE_BOXES = [
    {"x1": 16.0, "y1": 0.0, "x2": 80.0, "y2": 48.0},
    {"x1": 32.0, "y1": 16.0, "x2": 112.0, "y2": 64.0},
    {"x1": 0.0, "y1": 0.0, "x2": 128.0, "y2": 64.0},
]


def test_detect_maps_boxes_back_through_the_letterbox(client: TestClient) -> None:
    response = client.post("/v1/detect", files=upload(solid(128, 64)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"], body["format"]) == (128, 64, "PNG")
    assert body["model_id"] == "tiny" and len(body["model_version"]) == 12
    assert [d["box"] for d in body["detections"]] == WHITE_BOXES
    assert [d["label"] for d in body["detections"]] == ["bottle", "can", "bottle"]
    assert [d["class_id"] for d in body["detections"]] == [1, 2, 1]
    scores = [d["score"] for d in body["detections"]]
    assert scores == pytest.approx(expected_scores(WHITE_LETTERBOX_MEAN), abs=1e-4)
    timings = body["timings"]
    assert timings["batch_size"] == 1
    assert timings["total_ms"] >= timings["inference_ms"] >= 0


def test_raw_body_and_zero_detections(client: TestClient) -> None:
    gray = client.post(
        "/v1/detect", content=solid(40, 40, 128, "JPEG"), headers={"Content-Type": "image/jpeg"}
    )
    assert gray.status_code == 200, gray.text
    assert gray.json()["format"] == "JPEG"
    assert len(gray.json()["detections"]) == len(expected_scores(0.0)) == 2
    black = client.post("/v1/detect", files=upload(solid(64, 64, 0)))
    assert black.status_code == 200
    assert black.json()["detections"] == []


def test_query_filters(client: TestClient) -> None:
    image = upload(solid(64, 64))  # stretch-free square: the boxes stay as the model gave them
    strict = client.post("/v1/detect?score_threshold=0.6", files=image).json()
    assert [round(d["score"], 2) for d in strict["detections"]] == [0.88, 0.62]
    top = client.post("/v1/detect?max_detections=1", files=image).json()
    assert len(top["detections"]) == 1 and top["detections"][0]["score"] > 0.8
    cans = client.post("/v1/detect?classes=can", files=image).json()
    assert [d["label"] for d in cans["detections"]] == ["can"]
    both = client.post("/v1/detect?classes=can,bottle", files=image).json()
    assert len(both["detections"]) == 3
    everything = client.post("/v1/detect?score_threshold=0", files=image).json()
    assert len(everything["detections"]) == 3  # padding rows never appear


def test_batch_answers_in_order(client: TestClient) -> None:
    files = [
        ("images", ("white.png", solid(64, 64, 255), "image/png")),
        ("images", ("black.png", solid(64, 64, 0), "image/png")),
        ("images", ("gray.jpg", solid(64, 64, 128, "JPEG"), "image/jpeg")),
    ]
    response = client.post("/v1/detect/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [len(r["detections"]) for r in results] == [3, 0, 2]
    assert [r["format"] for r in results] == ["PNG", "PNG", "JPEG"]
    version = client.get("/v1/model").json()["model_version"]
    assert {r["model_version"] for r in results} == {version}


def test_two_streams_without_spinning_answer_the_same(model_path: Path) -> None:
    settings = make_settings(model_path, inference_streams=2, ort_spinning=False)
    with TestClient(create_app(settings)) as tuned:
        files = [("images", (f"{v}.png", solid(64, 64, v), "image/png")) for v in (255, 0, 128)]
        response = tuned.post("/v1/detect/batch", files=files)
    assert response.status_code == 200, response.text
    assert [len(r["detections"]) for r in response.json()["results"]] == [3, 0, 2]


def test_exif_orientation_is_applied_first(client: TestClient) -> None:
    image = Image.new("RGB", (100, 50), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    data = encode(image, "JPEG", exif=exif)
    body = client.post("/v1/detect", files=upload(data, "camera.jpg")).json()
    assert (body["width"], body["height"]) == (50, 100)
    for det in body["detections"]:
        assert det["box"]["x2"] <= 50 and det["box"]["y2"] <= 100


def test_model_metadata(client: TestClient, model_path: Path) -> None:
    info = client.get("/v1/model").json()
    assert info["classes"] == ["__background__", "bottle", "can"]
    assert (info["input_size"], info["resize_mode"], info["head"]) == (64, "letterbox", "ssd")
    assert info["backbone"] == "tiny-test" and info["val_map"] == 0.5
    assert info["provider"] == "CPUExecutionProvider"
    assert info["sha256"].startswith(info["model_version"])


def test_health_readiness_page_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    detect = spec["paths"]["/v1/detect"]["post"]
    assert "multipart/form-data" in detect["requestBody"]["content"]
    assert {"/v1/detect/batch", "/v1/model", "/v1/admin/reload"} <= set(spec["paths"])


def test_metrics(client: TestClient) -> None:
    client.post("/v1/detect", files=upload(solid(32, 32)))
    client.post("/v1/detect", content=b"not an image", headers={"Content-Type": "image/png"})
    text = client.get("/metrics").text
    assert 'prodet_http_requests_total{method="POST",route="/v1/detect",status="200"} 1.0' in text
    assert 'prodet_http_requests_total{method="POST",route="/v1/detect",status="415"} 1.0' in text
    assert "prodet_batch_size_count 1.0" in text
    assert "prodet_queue_depth 0.0" in text
    assert 'provider="CPUExecutionProvider"' in text and "prodet_model_info{" in text
    assert 'prodet_http_request_duration_seconds_count{route="/v1/detect"} 2.0' in text


def test_api_key(model_path: Path) -> None:
    settings = make_settings(model_path, api_key=API_KEY)
    with TestClient(create_app(settings)) as client:
        image = upload(solid(32, 32))
        assert_error(client.post("/v1/detect", files=image), 401, "unauthorized")
        wrong = client.post("/v1/detect", files=image, headers={"X-API-Key": "x" * 24})
        assert_error(wrong, 401, "unauthorized")
        assert client.post("/v1/detect", files=image, headers={"X-API-Key": API_KEY}).is_success
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        assert client.post("/v1/detect", files=image, headers=bearer).is_success
        assert_error(client.post("/v1/admin/reload"), 401, "unauthorized")
        assert client.get("/v1/model").status_code == 200
        assert client.get("/healthz").status_code == 200


def test_settings_refuse_unsafe_values(model_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        make_settings(model_path, api_key="short")
    with pytest.raises(ValidationError, match="max_queue"):
        make_settings(model_path, max_batch=16, max_queue=8)


def test_settings_from_environment(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prodet.serve.settings import Settings

    monkeypatch.setenv("PRODET_MODEL", str(model_path))
    monkeypatch.setenv("PRODET_MAX_BATCH", "4")
    monkeypatch.setenv("PRODET_REQUIRE_GPU", "true")
    monkeypatch.setenv("PRODET_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("PRODET_API_KEY", API_KEY)
    settings = Settings()
    assert (settings.model, settings.max_batch, settings.require_gpu) == (model_path, 4, True)
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
    assert settings.api_key is not None and settings.api_key.get_secret_value() == API_KEY
    assert Settings(max_batch=2).max_batch == 2  # explicit values win over the environment


def test_cors(model_path: Path) -> None:
    settings = make_settings(model_path, cors_origins="http://shop.example")
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/v1/detect",
            headers={"Origin": "http://shop.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "http://shop.example"
        other = client.get("/v1/model", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_stretch_models_scale_each_axis(tmp_path: Path) -> None:
    path = save_model(tmp_path / "stretch.onnx", resize_mode="stretch")
    with TestClient(create_app(make_settings(path))) as client:
        body = client.post("/v1/detect", files=upload(solid(128, 32))).json()
    # scale (0.5, 2.0), no padding: the model's [8, 8, 40, 40] is [16, 4, 80, 20].
    assert body["detections"][0]["box"] == {"x1": 16.0, "y1": 4.0, "x2": 80.0, "y2": 20.0}
    assert len(body["detections"]) == 3  # stretched white fills the whole input
