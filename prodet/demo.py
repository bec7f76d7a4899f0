"""``prodet demo``: the whole pipeline end to end, as a user would run it.

Every step is the real ``prodet`` command in a subprocess (so the demo exercises the
same entry points a user types): synthesise a product-shelf VOC set, ``convert``,
``train``, ``evaluate``, ``export`` (parity gate included), ``serve`` on 127.0.0.1,
POST held-out images to ``/v1/detect``, draw the answers, stop the service. This
module is part of the command layer, above every stage, and imports no torch itself.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from prodet.configs import recipe_path
from prodet.live_server import ServerStartError, live_server
from prodet.serve.draw import annotate
from prodet.serve.postprocess import Detection

logger = logging.getLogger(__name__)

# The training recipe (configs/demo-ssd.yaml, package data of prodet.configs): the demo
# adds the data, the run folder, the seed and the time budget.
TRAIN_RECIPE = "demo-ssd"


@dataclass
class DemoPlan:
    """Where the demo writes and how long it trains."""

    out: Path
    images: int = 300
    train_minutes: float = 7.0
    seed: int = 0
    posts: int = 6
    steps_done: list[str] = field(default_factory=list)


class DemoError(RuntimeError):
    """A pipeline step failed; the message names the step and its last output lines."""


def _prodet(step: str, *args: str, echo: bool = True) -> str:
    """Run ``prodet ARGS`` and stream its output; raise ``DemoError`` on failure."""
    cmd = [sys.executable, "-m", "prodet", *args]
    logger.info("$ prodet %s", " ".join(args))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    for line in proc.stdout or ():
        lines.append(line)
        if echo:
            sys.stderr.write("    " + line)
    if proc.wait() != 0:
        tail = "".join(lines[-15:])
        raise DemoError(f"step '{step}' failed (exit {proc.returncode}):\n{tail}")
    return "".join(lines)


def _post_images(base: str, images: list[Path], annotated_dir: Path) -> list[dict[str, Any]]:
    annotated_dir.mkdir(parents=True, exist_ok=True)
    answers = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for path in images:
            response = client.post(
                "/v1/detect",
                files={"image": (path.name, path.read_bytes(), "image/jpeg")},
                params={"score_threshold": 0.5},
            )
            if response.status_code != 200:
                raise DemoError(
                    f"step 'detect' failed: {path.name}: HTTP {response.status_code} {response.text}"
                )
            answer = response.json()
            detections = [
                Detection(d["label"], d["class_id"], d["score"], tuple(d["box"].values()))
                for d in answer["detections"]
            ]
            pixels = np.asarray(Image.open(path).convert("RGB"))
            annotate(pixels, detections).save(annotated_dir / f"{path.stem}.png")
            answers.append({"image": path.name, **answer})
    return answers


def run_demo(plan: DemoPlan) -> dict[str, Any]:
    """Run every step; return the summary (also written to ``OUT/summary.json``)."""
    out = plan.out.resolve()
    voc, data, run = out / "shelf_voc", out / "shelf.pkl", out / "run"
    model, annotated = out / "model.onnx", out / "annotated"
    started = time.monotonic()

    def step(n: int, text: str) -> None:
        sys.stderr.write(f"\n[{n}/7] {text}  ({time.monotonic() - started:.0f} s elapsed)\n")

    step(1, f"drawing {plan.images} synthetic product-shelf images (Pascal VOC layout)")
    if (voc / "ImageSets" / "Main" / "test.txt").exists():
        sys.stderr.write(f"    reusing {voc}\n")
    else:
        _prodet("synth", "synth", str(voc), "--images", str(plan.images), "--seed", str(plan.seed))
    step(2, "prodet convert")
    _prodet("convert", "convert", str(voc), "-o", str(data))
    step(
        3, f"prodet train (SSD on pretrained EfficientNet-Lite0, {plan.train_minutes:g} min budget)"
    )
    if (run / "last.pt").exists():
        _prodet(
            "train",
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--resume",
            "--max-minutes",
            str(plan.train_minutes),
        )
    else:
        _prodet(
            "train", "train", "--config", str(recipe_path(TRAIN_RECIPE)), "--data", str(data),
            "--out", str(run), "--max-minutes", str(plan.train_minutes), "--seed", str(plan.seed),
        )  # fmt: skip
    step(4, "prodet evaluate on the held-out test split")
    _prodet(
        "evaluate",
        "evaluate",
        "--checkpoint",
        str(run / "best.pt"),
        "--data",
        str(data),
        "--split",
        "test",
    )
    metrics = json.loads((run / "eval-test" / "summary.json").read_text())
    step(5, "prodet export (ONNX, parity gate against PyTorch)")
    _prodet("export", "export", str(run / "best.pt"), "-o", str(model))
    step(6, "prodet serve on 127.0.0.1 and POST held-out images to /v1/detect")
    try:
        with live_server(out / "serve.log", "--model", str(model)) as server:
            test_ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()[: plan.posts]
            images = [next((voc / "JPEGImages").glob(f"{i}.*")) for i in test_ids]
            answers = _post_images(server.url, images, annotated)
    except ServerStartError as exc:
        raise DemoError(f"step 'serve' failed: {exc}") from exc
    step(7, "stopped the service")
    summary = {
        "test_voc_map_area@0.5": metrics["voc"]["map_area"],
        "test_voc07_map_11point@0.5": metrics["voc"]["map_11point"],
        "test_coco_map": metrics["coco"]["AP"],
        "model": str(model),
        "run_folder": str(run),
        "plots": [str(run / "curves.png"), str(run / "eval-test" / "pr_curves.png")],
        "annotated_images": str(annotated),
        "serve_again": f"prodet serve --model {model}",
        "minutes": round((time.monotonic() - started) / 60, 1),
        "first_answer": answers[0] if answers else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
