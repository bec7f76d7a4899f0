"""The exported models load in the service: Contract 3 checked end to end by ``serve``."""

from __future__ import annotations

import numpy as np
import pytest

from prodet.export.ort_runner import open_session, run_batches
from prodet.serve.model_runner import ModelRunner
from tests.export.conftest import HEADS
from tests.export.images import split_images


@pytest.mark.parametrize("head", HEADS)
def test_the_service_loads_and_runs_the_export(exported, checkpoints, tiny_data, head):
    path = exported[head].path
    runner = ModelRunner.load(path, provider="cpu", intra_op_threads=1, warmup_batch=8)
    meta = runner.metadata
    assert (meta.head, meta.input_size, meta.precision) == (
        head,
        int(exported[head].metadata["input_size"]),
        "fp32",
    )
    assert meta.classes == ("__background__", "blue", "red") and meta.detections_per_img == 100
    spec = {
        "size": meta.input_size,
        "mean": meta.mean,
        "std": meta.std,
        "resize_mode": meta.resize_mode,
    }
    images = split_images(tiny_data, "test", spec, 4)[0].numpy()
    served = runner.run(images)
    direct = run_batches(open_session(path, threads=1), images, 4)
    assert [len(d.scores) for d in served] == [len(d) for d in direct]
    for mine, theirs in zip(direct, served, strict=True):
        np.testing.assert_array_equal(mine.boxes, theirs.boxes)
        np.testing.assert_array_equal(mine.labels, theirs.labels)
