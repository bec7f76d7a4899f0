"""Training end to end on a tiny synthetic dataset: files, resume after SIGKILL, DDP, CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from prodet.annotations.convert import convert_folder
from prodet.annotations.pickle_store import dump_dataset, load_dataset
from prodet.commands import main as prodet
from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.config import load_config
from prodet.detection.trainer import epochs_without_improvement, fit, resolve_splits
from tests.annotations.voc_factory import voc_xml

REPO = Path(__file__).resolve().parents[2]
SIZE = 64


def make_tiny_dataset(root: Path, n: int = 16) -> Path:
    """n 64x64 images with one red square ('red') or blue disc ('blue') each."""
    rng = np.random.default_rng(0)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = []
    for i in range(n):
        stem = f"{i:03d}"
        image = Image.new("RGB", (SIZE, SIZE), (200, 200, 190))
        draw = ImageDraw.Draw(image)
        x, y, s = (int(v) for v in rng.integers(4, 30, size=3))
        s = max(s, 12)
        name = "red" if i % 2 == 0 else "blue"
        if name == "red":
            draw.rectangle([x, y, x + s - 1, y + s - 1], fill=(220, 30, 30))
        else:
            draw.ellipse([x, y, x + s - 1, y + s - 1], fill=(30, 30, 220))
        image.save(root / "JPEGImages" / f"{stem}.png")
        xml = voc_xml(f"{stem}.png", SIZE, SIZE, [(name, x + 1, y + 1, x + s, y + s)])
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
        ids.append(stem)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids[:12]) + "\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[12:]) + "\n")
    out = root / "tiny.pkl"
    dump_dataset(convert_folder(root, workers=1).dataset, out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "voc")


def tiny_overrides(data: Path, out: Path, epochs: int = 2) -> dict:
    return {
        "data": str(data),
        "out": str(out),
        "backbone_weights": "none",
        "size": SIZE,
        "batch_size": 4,
        "workers": 0,
        "epochs": epochs,
        "val_fraction": 0.25,
        "warmup_epochs": 0.5,
        "lr": 0.01,
    }


def losses(history: list[dict]) -> list[float]:
    return [row["train_loss"] for row in history]


def test_fit_writes_run_folder_and_evaluates(tiny, tmp_path):
    result = fit(load_config(None, tiny_overrides(tiny, tmp_path / "run")), progress=False)
    run = tmp_path / "run"
    assert result.epochs_done == 2 and len(result.history) == 2
    assert all(np.isfinite(losses(result.history)))
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["classes"] == ["__background__", "blue", "red"]
    assert ckpt["input"]["size"] == SIZE
    with pytest.raises(ValueError, match="already holds a run"):
        fit(load_config(None, tiny_overrides(tiny, run)), progress=False)


def test_loss_decreases_on_repeated_training(tiny, tmp_path):
    overrides = {**tiny_overrides(tiny, tmp_path / "run", epochs=6), "preset": "light"}
    history = fit(load_config(None, overrides), progress=False).history
    assert losses(history)[-1] < 0.7 * losses(history)[0]


def test_sigkill_and_resume_gives_the_same_history(tiny, tmp_path):
    reference = fit(
        load_config(None, tiny_overrides(tiny, tmp_path / "ref", epochs=3)), progress=False
    )
    run = tmp_path / "killed"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in tiny_overrides(tiny, run, epochs=3).items()]
    cmd = [sys.executable, "-m", "prodet", "train", *args[:2], "--quiet", "--recipe", "none"]
    cmd += ["--set=" + a[2:].replace("-", "_", 1) for a in args[2:]]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (run / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = load_checkpoint(run / "last.pt")["epoch"]
    assert 1 <= done < 3
    resumed = fit(
        load_config(None, tiny_overrides(tiny, run, epochs=3)), resume=True, progress=False
    )
    assert resumed.epochs_done == 3
    np.testing.assert_allclose(losses(resumed.history), losses(reference.history), rtol=1e-4)
    maps = [(r["val_map_area"], r["val_coco_ap"]) for r in resumed.history]
    ref_maps = [(r["val_map_area"], r["val_coco_ap"]) for r in reference.history]
    np.testing.assert_allclose(maps, ref_maps, atol=1e-4)


def test_val_split_none_trains_on_everything_and_keeps_the_last_epoch(tiny, tmp_path, capsys):
    overrides = {**tiny_overrides(tiny, tmp_path / "run"), "val_split": "none"}
    result = fit(load_config(None, overrides), progress=False)
    assert result.epochs_done == 2
    assert not any("val_map_area" in row for row in result.history)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 2  # the last epoch
    train, val = resolve_splits(load_dataset(tiny), load_config(None, overrides))
    assert len(train) == 12 and val == []
    assert prodet(["train", "--config", str(tmp_path / "run" / "config.yaml"), "--out",
                   str(tmp_path / "again"), "--quiet"]) == 0  # fmt: skip
    assert "no validation (val_split none): best.pt is the last epoch" in capsys.readouterr().out
    with pytest.raises(ValueError, match="patience=3 stops on validation mAP"):
        load_config(None, {**overrides, "patience": 3})


def test_resume_without_checkpoint_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"no .*last\.pt to resume from"):
        fit(load_config(None, tiny_overrides(tiny, tmp_path / "none")), resume=True, progress=False)


def test_epochs_without_improvement():
    rows = [{"val_map_area": v} for v in (0.1, 0.3, 0.2, 0.3)]
    assert epochs_without_improvement(rows) == 2
    assert epochs_without_improvement([{"epoch": 1}]) == 0


def test_cli_train_then_evaluate(tiny, tmp_path, capsys):
    run = tmp_path / "cli"
    code = prodet(
        [
            "train",
            "--data",
            str(tiny),
            "--out",
            str(run),
            "--epochs",
            "1",
            "--size",
            str(SIZE),
            "--backbone-weights",
            "none",
            "--workers",
            "0",
            "--batch-size",
            "4",
            "--quiet",
        ]
    )
    assert code == 0
    assert "1 epochs (epochs)" in capsys.readouterr().out
    assert (
        prodet(
            [
                "evaluate",
                "--checkpoint",
                str(run / "best.pt"),
                "--data",
                str(tiny),
                "--split",
                "test",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    headline = json.loads(printed[printed.index('{\n  "split"') : printed.index("}\nwrote") + 1])
    assert headline["split"] == "test" and headline["images"] == 4
    summary = json.loads((run / "eval-test" / "summary.json").read_text())
    assert set(summary) == {"voc", "coco", "per_class"}
    assert summary["voc"]["iou_threshold"] == 0.5
    assert round(summary["voc"]["map_area"], 4) == headline["voc_map_area@0.5"]
    # The test split is ids 12-15: red, blue, red, blue.
    assert summary["voc"]["classes_without_ground_truth"] == []
    rows = summary["per_class"]
    assert [(r["name"], r["npos"]) for r in rows] == [("blue", 2), ("red", 2)]
    assert all(r["tp"] + r["fp"] == r["detections"] for r in rows)
    predictions = json.loads((run / "eval-test" / "predictions_coco.json").read_text())
    assert len(predictions) == sum(r["detections"] for r in rows)
    for name in ("per_class.md", "pr_curves.png"):
        assert (run / "eval-test" / name).is_file()
    assert prodet(["train", "--data", str(tiny), "--out", str(run), "--lr", "-1"]) == 2
    assert "lr=-1.0: must be positive" in capsys.readouterr().err


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun not installed",
)
def test_ddp_two_cpu_processes_gloo(tiny, tmp_path):
    run = tmp_path / "ddp"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    overrides = tiny_overrides(tiny, run, epochs=1)
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "prodet", "train"]
    cmd += ["--data", str(tiny), "--out", str(run), "--quiet", "--recipe", "none"]
    cmd += [f"--set={k}={v}" for k, v in overrides.items() if k not in ("data", "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["world_size"] == 2
    assert "val_map_area" in ckpt["history"][0]


def test_disk_cache_is_filled_by_the_first_run_and_reused_by_the_next(tiny, tmp_path):
    cache = tmp_path / "image-cache"
    overrides = {**tiny_overrides(tiny, tmp_path / "a", epochs=1), "cache": "disk"}
    overrides["cache_dir"] = str(cache)
    fit(load_config(None, overrides), progress=False)
    # 9 train images (drawn at 2x the input size; batches of 4 drop the 9th) and 3
    # validation images (at the input size), in one folder each
    folders = {p.name: len(list(p.glob("*.img"))) for p in cache.iterdir()}
    assert sorted(folders.values()) == [3, 8] and len(folders) == 2
    written = {e: e.stat().st_mtime_ns for e in cache.glob("*/*.img")}
    fit(load_config(None, {**overrides, "out": str(tmp_path / "b")}), progress=False)
    assert {e: e.stat().st_mtime_ns for e in written} == written  # read, not written again
