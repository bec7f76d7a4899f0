"""``prodet predict`` on folders: mirrored outputs, failures logged, resume, full disk."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prodet.commands import main
from tests.serve.batch_images import read_records, write_images

REPO = Path(__file__).resolve().parents[2]


def _predict(model: Path, out: Path, *inputs: Path | str, extra: tuple[str, ...] = ()) -> int:
    argv = ["predict", *map(str, inputs), "--model", str(model), "--out", str(out)]
    return main([*argv, "--provider", "cpu", *extra])


def _stats(out: Path) -> dict[str, tuple[int, int]]:
    """``(inode, mtime_ns)`` of every visible output file."""
    return {
        p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "errors.jsonl"
    }


def _without_image_paths(records: dict[str, dict]) -> dict[str, dict]:
    return {k: {f: v for f, v in r.items() if f != "image"} for k, r in records.items()}


def test_a_folder_run_mirrors_subfolders_logs_failures_and_goes_on(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "in"
    paths = write_images(images, 12, subfolders=3)
    (images / "part1" / "broken.png").write_bytes(b"not an image")
    (images / "part0" / "img000.webp").write_bytes(paths[0].read_bytes())  # img000.png's stem
    out = images / "predictions"  # inside the input: never walked

    assert _predict(model_path, out, images) == 1  # failures, but every other image is done
    summary = capsys.readouterr().out
    assert "14 images" in summary and "12 detected" in summary and "2 failed" in summary
    records = read_records(out)
    assert sorted(records) == sorted(
        p.relative_to(images).with_suffix(".json").as_posix() for p in paths
    )
    assert all((out / key).with_suffix(".png").is_file() for key in records)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    reasons = {e["name"]: e["reason"] for e in errors}
    assert set(reasons) == {"part0/img000.webp", "part1/broken.png"}
    assert "img000.png in the same folder has the stem 'img000'" in reasons["part0/img000.webp"]
    assert "not an image of a supported format" in reasons["part1/broken.png"]

    # the same images given one by one (file mode): the same detections
    files = tmp_path / "files"
    assert _predict(model_path, files, *paths[:3]) == 0
    for path in paths[:3]:
        single = json.loads((files / f"{path.stem}.json").read_text())
        assert single == records[path.relative_to(images).with_suffix(".json").as_posix()]


def test_a_rerun_skips_finished_images_and_refuses_other_options(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_images(tmp_path / "in", 6)
    out = tmp_path / "out"
    assert _predict(model_path, out, tmp_path / "in") == 0
    before = _stats(out)
    capsys.readouterr()
    assert _predict(model_path, out, tmp_path / "in") == 0
    assert "0 detected (0 detections), 6 skipped" in capsys.readouterr().out
    assert _stats(out) == before  # nothing rewritten

    assert _predict(model_path, out, tmp_path / "in", extra=("--score-threshold", "0.6")) == 2
    assert "differing: score_threshold" in capsys.readouterr().err
    assert _stats(out) == before
    extra = ("--score-threshold", "0.6", "--overwrite")
    assert _predict(model_path, out, tmp_path / "in", extra=extra) == 0
    assert "6 detected" in capsys.readouterr().out
    scores = [d["score"] for r in read_records(out).values() for d in r["detections"]]
    assert scores and min(scores) >= 0.6


def test_a_killed_run_resumes_without_redoing_finished_images(
    model_path: Path, tmp_path: Path
) -> None:
    write_images(tmp_path / "in", 200, subfolders=4)
    out = tmp_path / "out"
    argv = [str(tmp_path / "in"), "--model", str(model_path), "--out", str(out)]
    argv += ["--provider", "cpu", "--batch-size", "1"]
    slow = [sys.executable, "-m", "tests.serve.slow_predict", "0.03", *argv]
    run = subprocess.Popen(slow, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(out.rglob("img*.json"))) < 20 and run.poll() is None:
        assert time.monotonic() < deadline, "the slowed run wrote nothing for a minute"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL, run.stderr.read() if run.stderr else ""
    finished = {k: v for k, v in _stats(out).items() if k.endswith(".json")}
    assert 20 <= len(finished) < 200

    result = subprocess.run(
        [sys.executable, "-m", "prodet", "predict", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{200 - len(finished)} detected" in result.stdout
    assert f"{len(finished)} skipped" in result.stdout
    after = _stats(out)
    assert {k: after[k] for k in finished} == finished  # same inodes and mtimes: not redone
    assert not (out / ".partial").exists()

    clean = tmp_path / "clean"
    assert _predict(model_path, clean, tmp_path / "in") == 0
    assert read_records(out) == read_records(clean)
    assert sorted(after) == sorted(_stats(clean))
    for name in after:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name


def test_a_full_disk_stops_cleanly_and_the_rerun_resumes(
    model_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_images(tmp_path / "in", 8)
    out = tmp_path / "out"
    fsync = os.fsync

    def full_at_img003_json(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".img003.json."):
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full_at_img003_json)
    assert _predict(model_path, out, tmp_path / "in") == 1
    err = capsys.readouterr().err
    assert f"no space left for {out}" in err and "rerun the same command to resume" in err
    written = sorted(p.name for p in out.iterdir())
    done = [f"img00{i}.{ext}" for i in range(3) for ext in ("json", "png")]
    assert written == [".prodet-predict.json", *done]  # img003.png removed again, no temp files

    monkeypatch.setattr(os, "fsync", fsync)
    assert _predict(model_path, out, tmp_path / "in") == 0
    assert "5 detected (" in capsys.readouterr().out
    assert len(read_records(out)) == 8


def test_coco_files_load_in_pycocotools_and_keep_their_ids_on_resume(
    model_path: Path, tmp_path: Path
) -> None:
    coco_api = pytest.importorskip("pycocotools.coco", reason="pycocotools (the train extra)")
    paths = write_images(tmp_path / "in", 9, subfolders=3)
    (tmp_path / "in" / "part0" / "broken.bmp").write_bytes(b"BM broken")  # fails, keeps id 1
    out = tmp_path / "out"
    assert _predict(model_path, out, tmp_path / "in", extra=("--format", "coco")) == 1
    results = (out / "coco_results.json").read_bytes()
    info_file = out / "coco_image_info.json"
    info = json.loads(info_file.read_text())

    assert [c["name"] for c in info["categories"]] == ["bottle", "can"]
    by_name = {i["file_name"]: i for i in info["images"]}
    assert set(by_name) == {p.relative_to(tmp_path / "in").as_posix() for p in paths}
    assert [i["id"] for i in info["images"]] == [2, 3, 4, 5, 6, 7, 8, 9, 10]  # 1: the .bmp
    coco = coco_api.COCO(str(info_file))
    detections = coco.loadRes(str(out / "coco_results.json"))
    records = read_records(out / "coco_parts")
    assert len(detections.anns) == sum(len(r["detections"]) for r in records.values())
    name, record = next((k, r) for k, r in records.items() if r["detections"])
    first, box = record["detections"][0], record["detections"][0]["box"]
    image_id = by_name[name.replace(".json", ".png")]["id"]
    ann = detections.loadAnns(detections.getAnnIds(imgIds=[image_id]))[0]
    assert ann["bbox"] == pytest.approx(
        [box["x1"], box["y1"], box["x2"] - box["x1"], box["y2"] - box["y1"]]
    )
    assert (ann["category_id"], ann["score"]) == (first["class_id"], first["score"])

    for part in list((out / "coco_parts" / "part1").iterdir())[:2]:
        part.unlink()
    (out / "coco_results.json").unlink()
    assert _predict(model_path, out, tmp_path / "in", extra=("--format", "coco")) == 1
    assert (out / "coco_results.json").read_bytes() == results
    assert json.loads(info_file.read_text()) == info


def test_one_output_folder_takes_one_run_and_is_no_input(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another run writing there
        assert _predict(model_path, out, tmp_path / "in") == 2
        assert f"another prodet predict is writing into {out}" in capsys.readouterr().err
    finally:
        os.close(fd)
    assert list(out.iterdir()) == []
    assert _predict(model_path, tmp_path / "in", tmp_path / "in") == 2
    assert "is an input folder" in capsys.readouterr().err
