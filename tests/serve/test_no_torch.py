"""The service stage must run without torch: importing all of serve pulls in none of it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import serve
from tests.serve.live_server import REPO

FORBIDDEN = ("torch", "torchvision", "albumentations", "cv2", "datasets", "detection", "export")


def test_importing_every_serve_module_imports_no_training_stack() -> None:
    modules = sorted(f"serve.{m.name}" for m in pkgutil.iter_modules(serve.__path__))
    assert {"serve.app", "serve.cli", "serve.batcher", "serve.model_runner"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from serve.app import create_app\n"
        "import annotations.commands\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"serve imported {result.stdout.strip()}"
