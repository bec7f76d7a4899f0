"""``prodet predict`` with every inference batch slowed down: a run long enough to kill.

Usage: ``python -m tests.serve.slow_predict SECONDS PREDICT_ARGS...``. The test that kills
a run halfway (``test_batch_predict.py``) runs it in a subprocess; the slowdown lives here,
in the test, so ``prodet`` itself has no hook for it.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from prodet.commands import main
from prodet.export.onnx_contract import Detections
from prodet.serve.model_runner import ModelRunner

_run = ModelRunner.run


def _slow_run(self: ModelRunner, images: np.ndarray) -> list[Detections]:
    time.sleep(float(sys.argv[1]))
    return _run(self, images)


if __name__ == "__main__":
    ModelRunner.run = _slow_run  # type: ignore[method-assign]
    sys.exit(main(["predict", *sys.argv[2:]]))
