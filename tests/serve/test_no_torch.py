"""The service stage must run without torch: importing all of serve pulls in none of it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

from prodet import serve

FORBIDDEN_TOP = ("torch", "torchvision", "timm", "albumentations", "cv2")
FORBIDDEN_STAGES = ("prodet.datasets", "prodet.detection", "prodet.export")
# Torch-free contract modules that serve shares with the earlier stages.
SHARED = (
    "prodet.datasets",
    "prodet.datasets.geometry",
    "prodet.export",
    "prodet.export.onnx_contract",
)


def test_importing_every_serve_module_imports_no_training_stack(tmp_path: Path) -> None:
    modules = sorted(f"prodet.serve.{m.name}" for m in pkgutil.iter_modules(serve.__path__))
    assert {
        "prodet.serve.app",
        "prodet.serve.cli",
        "prodet.serve.batcher",
        "prodet.serve.model_runner",
    } <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from prodet.serve.app import create_app\n"
        "import prodet.commands, prodet.demo, prodet.live_server\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_TOP!r}\n"
        f"    or m.startswith({FORBIDDEN_STAGES!r}) and m not in {SHARED!r})\n"
        "print(','.join(loaded))\n"
    )
    # Run outside the repository, so the installed package is what gets imported.
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"serve imported {result.stdout.strip()}"
