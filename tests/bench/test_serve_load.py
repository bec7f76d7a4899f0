"""``bench/serve_load.py`` end to end on the tiny model: real servers, interleaved rounds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from load_client import LevelStats
from serve_peers import RawResult, combined_raw

from tests.serve.tiny_model import save_model

REPO = Path(__file__).resolve().parents[2]


def test_rounds_pool_answers_and_add_walls() -> None:
    first = LevelStats([0.1, 0.2], {503: 1}, 2.0)
    second = LevelStats([0.3], {503: 2, 0: 1}, 1.0)
    both = LevelStats.combined([first, second])
    assert both.latencies == [0.1, 0.2, 0.3] and both.wall_s == 3.0
    assert both.statuses == {503: 3, 0: 1} and both.images_per_s == 1.0
    raw = combined_raw(
        [[RawResult("model only", 1, 10, 1.0)], [RawResult("model only", 1, 30, 1.0)]]
    )
    assert raw == [RawResult("model only", 1, 40, 2.0)]


def test_serve_load_writes_its_section_and_plot(tmp_path: Path, camera: Path, report: Path) -> None:
    model = save_model(tmp_path / "tiny.onnx")
    command = [
        sys.executable,
        str(REPO / "bench" / "serve_load.py"),
        *("--model", str(model), "--camera", str(camera)),
        *("--seconds", "1", "--rounds", "2", "--concurrency", "1,8"),
        *("--provider", "cpu", "--write", str(report)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text(encoding="utf-8")
    assert "## Other\n\nkept" in text and "### camera photos" in text
    for server in ("prodet serve", "prodet serve --no-fast-jpeg"):
        for clients in (1, 8):
            row = re.search(
                rf"^\| {re.escape(server)} \| {clients} \| \d+ \| (\d+) \|.* \| ([\d.]+) \| ([\d.]+) \|$",
                text,
                re.M,
            )
            assert row is not None and int(row.group(1)) > 0, (server, clients)
            assert float(row.group(2)) > 0  # the server's CPU per answer
    assert "CPU per answered image at 8 clients (the server process, all its threads)" in text
    assert "raw onnxruntime, model only, batch 8" in text
    assert "in 2 interleaved rounds of 0.5 s" in text
    assert "At 8 clients prodet serve reaches" in text  # the ratios line
    assert "x prodet serve --no-fast-jpeg's images/s" in text
    assert (tmp_path / "docs" / "benchmarks" / "serve-latency-camera.png").stat().st_size > 0
