"""``prodet predict --ray-address``: Ray Data gives what the in-process run gives; bad input."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from prodet.commands import main
from prodet.serve.batch_cluster import CLUSTER_EXTRA, decode_outcome, encode_outcome
from prodet.serve.predict import ImageFailure, ImagePrediction
from tests.serve.batch_images import read_records, write_images


def _predict(model: Path, out: Path, images: Path, *extra: str) -> int:
    argv = ["predict", str(images), "--model", str(model), "--out", str(out)]
    return main([*argv, "--provider", "cpu", *extra])


@pytest.mark.ray
def test_ray_data_gives_the_same_detections_as_the_in_process_run(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ray = pytest.importorskip("ray", reason="Ray is the cluster extra")
    images = tmp_path / "in"
    write_images(images, 500, subfolders=5)
    (images / "part2" / "broken.png").write_bytes(b"not an image")

    assert _predict(model_path, tmp_path / "local", images, "--no-draw") == 1
    start = time.monotonic()
    code = _predict(
        model_path,
        tmp_path / "ray",
        images,
        "--no-draw",
        "--ray-address",
        "local",
        "--workers",
        "2",
        "--chunk-size",
        "300",  # two datasets, so two actor pools one after the other
    )
    elapsed = time.monotonic() - start
    assert code == 1, capsys.readouterr().err
    assert not ray.is_initialized()  # the cluster this run started is shut down
    assert "500 detected" in capsys.readouterr().out
    local, on_ray = read_records(tmp_path / "local"), read_records(tmp_path / "ray")
    assert len(local) == 500 and sum(len(r["detections"]) for r in local.values()) > 500
    assert on_ray == local
    errors = (tmp_path / "ray" / "errors.jsonl").read_text()
    assert errors == (tmp_path / "local" / "errors.jsonl").read_text()
    assert "part2/broken.png" in errors
    assert elapsed < 60


def test_an_unreachable_cluster_fails_fast_naming_the_address(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray", reason="Ray is the cluster extra")
    write_images(tmp_path / "in", 1)
    start = time.monotonic()
    code = _predict(model_path, tmp_path / "out", tmp_path / "in", "--ray-address", "127.0.0.1:9")
    assert code == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in capsys.readouterr().err
    assert time.monotonic() - start < 15
    assert not (tmp_path / "out" / "img000.json").exists()


def test_without_ray_the_message_names_the_extra(
    model_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    write_images(tmp_path / "in", 1)
    assert _predict(model_path, tmp_path / "out", tmp_path / "in", "--ray-address", "local") == 2
    assert CLUSTER_EXTRA == "pip install 'prodet[cluster]'"
    assert CLUSTER_EXTRA in capsys.readouterr().err


def test_workers_need_ray(model_path: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", 1)
    assert _predict(model_path, tmp_path / "out", tmp_path / "in", "--workers", "2") == 2


def test_outcomes_cross_the_object_store_unchanged() -> None:
    record = {"image": "a.png", "width": 3, "height": 2, "detections": [{"score": 0.5}]}
    for outcome in (
        ImagePrediction(record, 6, b"\x89PNG"),
        ImagePrediction(record, 1, None),
        ImageFailure("the bytes are not an image"),
    ):
        png = outcome.annotated_png if isinstance(outcome, ImagePrediction) else None
        assert decode_outcome(encode_outcome(outcome), png or b"") == outcome
