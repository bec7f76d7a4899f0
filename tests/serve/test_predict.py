"""``prodet predict``: annotated PNGs and JSON per image, same numbers as the service."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from prodet.commands import main
from prodet.serve.draw import class_color
from tests.serve.conftest import solid, upload


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_predict_writes_png_and_json_like_the_api(
    model_path: Path, tmp_path: Path, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    white = _write(tmp_path / "in" / "shelf.jpg", solid(128, 64))  # a PNG named .jpg
    black = _write(tmp_path / "in" / "dark.png", solid(50, 50, 0))
    twin = _write(tmp_path / "other" / "shelf.jpg", solid(30, 30, 128))
    broken = _write(tmp_path / "in" / "broken.png", b"not an image")
    out = tmp_path / "out"
    argv = ["predict", str(white), str(black), str(twin), str(broken)]
    code = main([*argv, "--model", str(model_path), "--out", str(out), "--provider", "cpu"])
    assert code == 1  # one image failed; the others were still written
    assert "broken.png" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "dark.json",
        "dark.png",
        "shelf-2.json",
        "shelf-2.png",
        "shelf.json",
        "shelf.png",
    ]
    record = json.loads((out / "shelf.json").read_text())
    api = client.post("/v1/detect", files=upload(white.read_bytes())).json()
    assert record["detections"] == api["detections"]
    assert (record["width"], record["height"], record["format"]) == (128, 64, "PNG")
    assert json.loads((out / "dark.json").read_text())["detections"] == []
    assert len(json.loads((out / "shelf-2.json").read_text())["detections"]) == 2

    drawn = np.asarray(Image.open(out / "shelf.png").convert("RGB"))
    assert drawn.shape == (64, 128, 3)
    box_pixels = np.all(drawn == class_color(1), axis=2)
    assert box_pixels[:, 16].sum() > 10  # the left edge of the first box, x = 16
    assert not np.all(
        np.asarray(Image.open(out / "dark.png").convert("RGB")) == class_color(1), axis=2
    ).any()


def test_predict_refuses_unknown_classes(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _write(tmp_path / "a.png", solid(20, 20))
    argv = ["predict", str(image), "--model", str(model_path), "--out", str(tmp_path / "o")]
    assert main([*argv, "--provider", "cpu", "--classes", "giraffe"]) == 2
    assert "unknown class name(s) ['giraffe']" in capsys.readouterr().err
    assert not (tmp_path / "o" / "a.json").exists()
    assert main([*argv, "--provider", "cpu", "--classes", "can"]) == 0
    record = json.loads((tmp_path / "o" / "a.json").read_text())
    assert [d["label"] for d in record["detections"]] == ["can"]


def test_predict_decodes_jpegs_fast_unless_told_not_to(model_path: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 480), "white").save(photo, "JPEG")
    records = {}
    for flag, drawn_size in (("--fast-jpeg", (80, 60)), ("--no-fast-jpeg", (640, 480))):
        out = tmp_path / flag
        argv = ["predict", str(photo), "--model", str(model_path), "--out", str(out)]
        assert main([*argv, "--provider", "cpu", flag]) == 0
        records[flag] = json.loads((out / "photo.json").read_text())
        assert (records[flag]["width"], records[flag]["height"]) == (640, 480)
        with Image.open(out / "photo.png") as drawn:
            assert drawn.size == drawn_size  # drawn on the decoded pixels: 1/8 when fast
            pixels = np.asarray(drawn.convert("RGB"))
        # the first box (model input 8..40 of 64, letterbox: x 80..400 of 640) drawn there
        left = round(80 * drawn_size[0] / 640)
        assert np.all(pixels == class_color(1), axis=2)[:, left].sum() > drawn_size[1] // 5
    assert records["--fast-jpeg"]["detections"] == records["--no-fast-jpeg"]["detections"]
