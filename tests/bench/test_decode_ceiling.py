"""``bench/decode_ceiling.py`` end to end on the tiny model and three small JPEGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.serve.tiny_model import save_model

REPO = Path(__file__).resolve().parents[2]


def test_decode_ceiling_writes_its_section(tmp_path: Path, camera: Path, report: Path) -> None:
    model = save_model(tmp_path / "tiny.onnx")
    command = [
        sys.executable,
        str(REPO / "bench" / "decode_ceiling.py"),
        *("--model", str(model), "--camera", str(camera)),
        *("--repeats", "1", "--cores", "2", "--write", str(report)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    text = report.read_text(encoding="utf-8")
    assert "## Other\n\nkept" in text
    assert "## Camera photos: the CPU ceiling of fast and full decoding" in text
    assert "| pre-processing, reduced decode (default) |" in text
    assert "Ceilings on 2 cores" in text
