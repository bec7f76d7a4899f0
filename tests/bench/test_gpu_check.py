"""``bench/gpu_check.py`` on the CPU, as the GPU machine's bare image runs it.

The GPU machine has prodet's dependencies but no prodet install, and runs the script as
``python bench/gpu_check.py`` from a copy of the repository. These tests hide the installed
prodet (editable or not) from a fresh interpreter with a ``sitecustomize`` module, so the
script must import prodet through its own bootstrap (``bench/bare_checkout.py``); the
whole command then runs 2 steps per head on 20 small synthetic images.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"

# Finds `prodet` only outside site-packages (and not through setuptools' editable finder),
# and every `prodet.*` module only inside its parent's __path__.
HIDE_INSTALLED_PRODET = """
import site
import sys
from importlib.machinery import PathFinder

_INSTALLED = {*site.getsitepackages(), site.getusersitepackages()}


class _HideInstalledProdet:
    def find_spec(self, name, path=None, target=None):
        if name == "prodet":
            path = [p for p in sys.path if p not in _INSTALLED and "__editable__" not in p]
        elif not name.startswith("prodet."):
            return None
        spec = PathFinder.find_spec(name, path)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return spec


sys.meta_path.insert(0, _HideInstalledProdet())
"""


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """The environment of an interpreter that has prodet's dependencies but not prodet."""
    hook = tmp_path / "hide_prodet"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HIDE_INSTALLED_PRODET, encoding="utf-8")
    return {**os.environ, "PYTHONPATH": str(hook), "OMP_NUM_THREADS": "1"}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_bootstrap_maps_the_stage_folders_when_prodet_is_not_installed(tmp_path: Path) -> None:
    env = _bare_env(tmp_path)
    hidden = _python("import prodet.detection", env)
    # From the repository root, `prodet` alone is found (its folder), but not its stages.
    assert hidden.returncode != 0
    assert "No module named 'prodet.detection'" in hidden.stderr

    code = (
        "import sys; sys.path.insert(0, 'bench'); import bare_checkout, os\n"
        "import prodet, prodet.detection.config as config, prodet.serve.model_runner as runner\n"
        "print(bare_checkout.NAMESPACE_FOLDER)\n"
        "print(os.path.realpath(config.__file__)); print(os.path.realpath(runner.__file__))\n"
        "print(prodet.__version__); print(os.environ['PYTHONPATH'])\n"
    )
    done = _python(code, env)
    assert done.returncode == 0, done.stderr
    folder, config_file, runner_file, version, pythonpath = done.stdout.split("\n")[:5]
    assert config_file == str(REPO / "detection" / "config.py")
    assert runner_file == str(REPO / "serve" / "model_runner.py")
    assert version == "0.1.0"
    assert pythonpath.split(os.pathsep)[0] == folder  # worker processes find it too
    assert "prodet is not installed" in done.stderr
    assert not Path(folder).exists()  # removed when the interpreter exited


def test_bootstrap_does_nothing_when_prodet_is_installed() -> None:
    code = "import sys; sys.path.insert(0, 'bench'); import bare_checkout\nprint(bare_checkout.NAMESPACE_FOLDER)"
    done = _python(code, dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def _row(stdout: str, head: str) -> dict[str, str]:
    lines = [line for line in stdout.splitlines() if line.startswith("|")]  # header, rule, rows
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    (row,) = [r for r in rows if r[0] == head]
    return dict(zip(header, row, strict=True))


def test_gpu_check_runs_both_heads_on_the_cpu_from_a_bare_checkout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable, str(SCRIPT.relative_to(REPO)), "--device", "cpu", "--steps", "2",
        "--data", "synthetic", "--synth-images", "20", "--synth-size", "128", "--size", "128",
        "--timing-images", "8", "--repeats", "1", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, env=_bare_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prodet is not installed" in done.stderr
    assert "## GPU check\n\n`bench/gpu_check.py` on cpu:" in done.stdout
    for head in ("ssd", "fast_rcnn"):
        row = _row(done.stdout, head)
        assert int(row["steps"]) == 2  # 16 trainval images, batch 8: one epoch
        assert 0.0 <= float(row["test VOC mAP@0.5"]) <= 1.0
        for column in ("eager ms/img b1", "eager ms/img b8", "ORT ms/img b1", "ORT ms/img b8"):
            assert float(row[column]) > 0, column
        assert row["onnxruntime provider"] == "CPUExecutionProvider"
        assert row["parity gate"].startswith("passed, 16 img")
        assert (out / f"{head}.onnx").is_file()
    assert re.search(r"- Command: `python bench/gpu_check.py --device cpu", done.stdout)
    assert (out / "gpu_check.md").read_text(encoding="utf-8") in done.stdout
