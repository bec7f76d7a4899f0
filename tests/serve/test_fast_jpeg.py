"""Fast JPEG decoding on camera photos: boxes within a pixel of a full decode, in the frame
of the original upright photo (EXIF orientations 1, 6 and 8), and the setting to turn it off.

The photo is one generated 4032 x 3024 shelf scene (``annotations.synthetic``), saved as
a phone saves it (``annotations.camera_photo``): JPEG quality 90, stored as drawn (1) or
turned with orientation 6 or 8. The model is ``centroid_model``: its boxes follow the
picture, so a decode that moved, turned or squeezed it would move them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from prodet.annotations.camera_photo import encode_photo
from prodet.annotations.orientation import orient_box, upright
from prodet.annotations.synthetic import dataset_scene
from prodet.serve.app import create_app
from prodet.serve.cli import _serve_parser
from prodet.serve.model_runner import ModelRunner
from prodet.serve.postprocess import DetectionFilter, select_detections
from prodet.serve.predict_cli import _predict_parser
from prodet.serve.preprocess import prepare_image
from prodet.serve.settings import Settings
from tests.serve.centroid_model import save_centroid_model
from tests.serve.conftest import make_settings, upload

CAMERA = (4032, 3024)
ORIENTATIONS = (1, 6, 8)


@pytest.fixture(scope="module")
def photos() -> dict[int, bytes]:
    """One drawn scene stored as a 4032 x 3024 camera photo with each of ``ORIENTATIONS``."""
    stored = dataset_scene(0, seed=0, size=CAMERA).image
    return {o: encode_photo(upright(stored, o), [], o, quality=90)[0] for o in ORIENTATIONS}


@pytest.fixture(scope="module", params=["stretch", "letterbox"])
def runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelRunner:
    folder = tmp_path_factory.mktemp("centroid")
    path = save_centroid_model(folder / f"{request.param}.onnx", 320, request.param)
    return ModelRunner.load(path, provider="cpu", warmup_batch=1)


def _boxes(
    data: bytes, runner: ModelRunner, *, fast_jpeg: bool
) -> tuple[np.ndarray, tuple[int, int]]:
    prepared = prepare_image(data, runner.metadata, max_pixels=10**8, fast_jpeg=fast_jpeg)
    raw = runner.run(prepared.tensor[None])[0]
    keep = DetectionFilter.build(runner.metadata)
    boxes = np.asarray([d.box for d in select_detections(raw, prepared, runner.metadata, keep)])
    return boxes, (prepared.width, prepared.height)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_fast_decoding_keeps_boxes_within_a_pixel_of_the_full_decode(
    photos: dict[int, bytes], runner: ModelRunner, orientation: int
) -> None:
    fast, fast_size = _boxes(photos[orientation], runner, fast_jpeg=True)
    full, full_size = _boxes(photos[orientation], runner, fast_jpeg=False)
    upright = (4032, 3024) if orientation == 1 else (3024, 4032)
    assert fast_size == full_size == upright
    assert fast.shape == full.shape == (2, 4)
    np.testing.assert_allclose(fast, full, atol=1.0)
    # All three store the same pixels, so each upright view's boxes sit where the stored
    # photo's boxes land once turned (centres compared: a box's size is set in input
    # pixels, which a turn maps to other original pixels; resampling the turned picture
    # differs a little, hence 2 px; a box in the wrong frame would be hundreds off).
    stored, _ = _boxes(photos[1], runner, fast_jpeg=True)
    centres = (stored[:, :2] + stored[:, 2:]) / 2
    turned = [orient_box((x, y, x, y), CAMERA, orientation)[:2] for x, y in centres]
    np.testing.assert_allclose((fast[:, :2] + fast[:, 2:]) / 2, turned, atol=2.0)


def test_the_setting_reaches_the_service(
    photos: dict[int, bytes], runner: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODET_FAST_JPEG", "false")
    assert Settings(model=runner.path).fast_jpeg is False
    parsed = _serve_parser().parse_args(["--model", "m.onnx", "--no-fast-jpeg"])
    assert Settings(**vars(parsed)).fast_jpeg is False
    assert _predict_parser().parse_args(["a.jpg", "--model", "m", "--out", "o"]).fast_jpeg
    answers = {}
    for fast_jpeg in (True, False):
        settings = make_settings(Path(runner.path), fast_jpeg=fast_jpeg)
        with TestClient(create_app(settings)) as client:
            response = client.post("/v1/detect", files=upload(photos[6], "photo.jpg"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["width"], body["height"], body["format"]) == (3024, 4032, "JPEG")
        answers[fast_jpeg] = [
            [d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in body["detections"]
        ]
    expected, _ = _boxes(photos[6], runner, fast_jpeg=False)
    np.testing.assert_allclose(answers[False], expected, atol=0.01)
    np.testing.assert_allclose(answers[True], expected, atol=1.0)
