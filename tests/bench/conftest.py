"""Inputs the bench scripts' end-to-end tests share, and ``bench/`` on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))  # the scripts import their siblings by name


@pytest.fixture
def camera(tmp_path: Path) -> Path:
    """A `prodet synth`-shaped folder of three small random JPEGs (quality 90)."""
    folder = tmp_path / "camera" / "JPEGImages"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    return folder.parent


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A BENCHMARKS.md with another section, which a script's ``--write`` must keep."""
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Other\n\nkept\n", encoding="utf-8")
    return path
