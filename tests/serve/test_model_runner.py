"""Loading models against Contract 3: metadata, signature, warm-up, providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from prodet.serve.model_runner import CPU, ModelLoadError, ModelRunner, requested_providers
from tests.serve.tiny_model import BOXES, build_model, save_model


def test_load_checks_and_runs(model_path: Path) -> None:
    runner = ModelRunner.load(model_path, provider="cpu", warmup_batch=4)
    assert runner.providers == (CPU,) and not runner.on_gpu
    assert runner.version == runner.sha256[:12] and runner.warmup_ms > 0
    images = np.full((2, 3, 64, 64), 2.0, np.float32)  # white: three detections
    images[1] = -2.0  # black: none
    first, second = runner.run(images)
    np.testing.assert_array_equal(first.boxes, np.float32(BOXES))
    assert first.labels.tolist() == [1, 2, 1]
    assert second.boxes.shape == (0, 4) and second.scores.shape == (0,)


def test_non_spinning_threads_give_the_same_answers(model_path: Path) -> None:
    spinning = ModelRunner.load(model_path, provider="cpu", intra_op_threads=2)
    sleeping = ModelRunner.load(model_path, provider="cpu", intra_op_threads=2, spinning=False)
    assert spinning.intra_op_threads == sleeping.intra_op_threads == 2
    images = np.full((1, 3, 64, 64), 2.0, np.float32)
    np.testing.assert_array_equal(spinning.run(images)[0].boxes, sleeping.run(images)[0].boxes)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ({"classes": None}, "lacks 'classes'"),
        (
            {"output_names": ("bboxes", "scores", "labels", "num_detections")},
            "lacks output 'boxes'",
        ),
        ({"count_offset": 5}, "warm-up"),
    ],
)
def test_contract_violations_are_refused(
    tmp_path: Path, build: dict[str, object], message: str
) -> None:
    path = save_model(tmp_path / "m.onnx", **build)
    with pytest.raises(ModelLoadError, match=message):
        ModelRunner.load(path, provider="cpu")


def test_input_size_must_match_the_graph(tmp_path: Path) -> None:
    model = build_model()
    for prop in model.metadata_props:
        if prop.key == "input_size":
            prop.value = "32"
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelLoadError, match=r"input_size=32"):
        ModelRunner.load(tmp_path / "m.onnx", provider="cpu")


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        ModelRunner.load(tmp_path / "missing.onnx", provider="cpu")
    (tmp_path / "junk.onnx").write_bytes(b"this is not protobuf" * 10)
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        ModelRunner.load(tmp_path / "junk.onnx", provider="cpu")


def test_require_gpu_refuses_a_cpu_session(model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="--require-gpu"):
        ModelRunner.load(model_path, provider="cpu", require_gpu=True)


def test_auto_reports_the_provider_actually_running(model_path: Path) -> None:
    runner = ModelRunner.load(model_path, provider="auto")
    assert runner.provider in ("CUDAExecutionProvider", CPU)
    assert runner.on_gpu == (runner.provider != CPU)


def test_requested_providers() -> None:
    assert requested_providers("cpu") == [CPU]
    assert requested_providers("auto")[-1] == CPU
    assert "TensorrtExecutionProvider" not in requested_providers("auto")
    with pytest.raises(ValueError, match="one of cpu, cuda, tensorrt, auto"):
        requested_providers("gpu")
