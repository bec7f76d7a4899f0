"""The serving peer of ``bench/serve_load.py``: the naive FastAPI server a user first writes.

One endpoint taking the raw image body, the PyTorch checkpoint run eagerly inside the
``async`` handler (so one request at a time), decoding and resizing inline. Start it with uvicorn::

    PRODET_NAIVE_CHECKPOINT=runs/x/best.pt uvicorn bench.naive_server:app --port 8020
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from fastapi import FastAPI, Request
from PIL import Image

from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.checkpoint_eval import eval_transform, model_from_checkpoint

_checkpoint = load_checkpoint(os.environ["PRODET_NAIVE_CHECKPOINT"])
_model, _ = model_from_checkpoint(_checkpoint)
_spec = _checkpoint["input"]
_transform = eval_transform(_spec)
_classes = _checkpoint["classes"]
app = FastAPI()


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/detect")
async def detect(request: Request, score_threshold: float = 0.5) -> dict[str, object]:
    """Raw image body; the model runs on the event loop, so requests are served one by one."""
    pixels = np.asarray(Image.open(io.BytesIO(await request.body())).convert("RGB"))
    h, w = pixels.shape[:2]
    sample = _transform(
        pixels, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    )
    with torch.no_grad():
        out = _model(sample.image[None])[0]
    sx, sy = _spec["size"] / w, _spec["size"] / h
    keep = out["scores"] >= score_threshold
    boxes = (out["boxes"][keep] / torch.tensor([sx, sy, sx, sy])).tolist()
    return {
        "width": w,
        "height": h,
        "detections": [
            {"label": _classes[int(label)], "score": float(score), "box": box}
            for box, score, label in zip(
                boxes, out["scores"][keep], out["labels"][keep], strict=True
            )
        ],
    }
