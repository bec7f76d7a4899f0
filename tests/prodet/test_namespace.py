"""One installed namespace: prodet installs ``prodet`` and nothing else at the top level,
and a user's own top-level ``datasets`` or ``serve`` package (Hugging Face's ``datasets``
is in most ML environments) neither shadows prodet nor is shadowed by it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.annotations.voc_factory import make_voc

REPO = Path(__file__).resolve().parents[2]
STAGES = ("annotations", "datasets", "detection", "export", "serve")
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "out", "runs", "__pycache__", "*.egg-info", "*.pkl", "*.onnx"
)


def test_the_wheel_holds_only_the_prodet_namespace(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("prodet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"prodet", f"{wheel.name.split('-py')[0]}.dist-info"}
    dist_info = next(t for t in top_level if t.endswith(".dist-info"))
    top_level_txt = zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode()
    assert top_level_txt.split() == ["prodet"]
    for stage in STAGES:
        assert f"prodet/{stage}/__init__.py" in names
    assert "prodet/serve/static/index.html" in names
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "prodet = prodet.commands:main" in entry_points


def test_foreign_top_level_datasets_and_serve_leave_prodet_working(tmp_path: Path) -> None:
    foreign = tmp_path / "site"
    for name in ("datasets", "serve", "annotations"):
        (foreign / name).mkdir(parents=True)
        (foreign / name / "__init__.py").write_text(f"OWNER = 'foreign {name}'\n")
    voc = make_voc(
        tmp_path / "voc",
        {"a": (64, 48, [("cup", 2, 3, 30, 40)]), "b": (64, 48, [("box", 5, 5, 60, 44)])},
    )
    code = f"""
import json, sys
import datasets, serve
from prodet.commands import main
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.serve.app import create_app
import prodet.datasets, prodet.serve
rc = main(["convert", {str(voc)!r}, "-o", {str(tmp_path / "d.pkl")!r}])
print(json.dumps({{
    "rc": rc,
    "datasets": sys.modules["datasets"].OWNER,
    "serve": sys.modules["serve"].OWNER,
    "prodet.datasets": prodet.datasets.__file__,
    "prodet.serve": prodet.serve.__file__,
}}))
"""
    env = {**os.environ, "PYTHONPATH": str(foreign)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=foreign, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["rc"] == 0
    assert (tmp_path / "d.pkl").is_file()
    assert seen["datasets"] == "foreign datasets"
    assert seen["serve"] == "foreign serve"
    for stage in ("prodet.datasets", "prodet.serve"):
        module_file = Path(seen[stage]).resolve()
        assert module_file.name == "__init__.py"
        assert not module_file.is_relative_to(foreign.resolve()), f"{stage} is the foreign one"
