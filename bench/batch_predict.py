"""Benchmark ``prodet predict`` on a folder: in this process against Ray Data actors.

``--count`` variants of the real images in ``--images`` (default: the commodity set's
``JPEGImages``) are written once into a work folder: the originals first, then flipped
and downscaled copies re-encoded as JPEG (quality 90), so that no two files are the same.
Then each configuration runs ``prodet predict FOLDER --format json --no-draw`` as a
subprocess into a fresh output folder, the configurations interleaved for ``--repeats``
rounds so that a change of machine load hits all of them alike:

* in process: one onnxruntime session using every core (no Ray);
* Ray Data, ``--ray-address local`` with 1 and 2 actors (``--workers``) of one CPU each
  (``--cpus-per-worker 1``): a local Ray cluster started by the run.

Two rates per configuration (median over the rounds): the run's own, ``images / seconds``
from its summary line (the walk, decoding, inference and writing, and with Ray the start
of the actors, which load the model; the driver's model load and the Ray cluster's start
excluded), and the end-to-end one (the whole command). Every configuration must write
the same detections (checked).

Run from the repository root::

    python bench/batch_predict.py --model out/commodity-ssd.onnx --count 20   # a smoke run
    python bench/batch_predict.py --model out/commodity-ssd.onnx --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_report import load_note, run_lines, write_section
from PIL import Image

SECTION_HEADING = "## Batch detection (prodet predict)"
SUMMARY = re.compile(r"prodet predict: (\d+) images in ([0-9.]+) s")


@dataclass
class Config:
    """One way of running ``prodet predict``, and what its rounds measured."""

    name: str
    flags: list[str]
    workers: str
    runs: list[float] = field(default_factory=list)  # the run's own seconds
    totals: list[float] = field(default_factory=list)  # the whole command's seconds


CONFIGS = (
    Config("in process (no Ray)", [], "-"),
    Config("Ray Data, local cluster", ["--ray-address", "local", "--workers", "1"], "1 x 1 CPU"),
    Config("Ray Data, local cluster", ["--ray-address", "local", "--workers", "2"], "2 x 1 CPU"),
)


def write_variants(source: Path, folder: Path, count: int) -> None:
    """``count`` distinct images from the files of ``source`` (see the module docstring)."""
    originals = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    if not originals:
        raise SystemExit(f"no images in {source}")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        original = originals[i % len(originals)]
        variant = i // len(originals)
        target = folder / f"{variant:03d}-{original.stem}.jpg"
        if variant == 0:
            target.write_bytes(original.read_bytes())
            continue
        with Image.open(original) as image:
            rgb = image.convert("RGB")
        if variant % 2:
            rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = 1.0 - 0.1 * (variant % 5)
        size = (max(32, round(rgb.width * scale)), max(32, round(rgb.height * scale)))
        rgb.resize(size, Image.Resampling.BILINEAR).save(target, "JPEG", quality=90)


def run_config(config: Config, model: Path, images: Path, out: Path, count: int) -> None:
    """Run ``prodet predict`` once with ``config``; record both durations."""
    command = [sys.executable, "-m", "prodet", "predict", str(images), "--model", str(model)]
    command += ["--out", str(out), "--format", "json", "--no-draw", "--provider", "cpu"]
    start = time.perf_counter()
    result = subprocess.run([*command, *config.flags], capture_output=True, text=True)
    total = time.perf_counter() - start
    match = SUMMARY.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"{config.name} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    if int(match.group(1)) != count:
        raise SystemExit(f"{config.name}: {match.group(1)} images, expected {count}")
    config.runs.append(float(match.group(2)))
    config.totals.append(total)


def records(out: Path) -> dict[str, list[object]]:
    """Every image's detections, by output file."""
    return {
        p.relative_to(out).as_posix(): json.loads(p.read_text())["detections"]
        for p in sorted(out.rglob("*.json"))
        if not p.name.startswith(".")
    }


def format_table(configs: tuple[Config, ...], count: int) -> str:
    rows = [
        "| how | actors | run s | images/s (run) | end-to-end s | images/s (end-to-end) | vs in process (run) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    baseline = statistics.median(configs[0].runs)
    for c in configs:
        run, total = statistics.median(c.runs), statistics.median(c.totals)
        rows.append(
            f"| {c.name} | {c.workers} | {run:.1f} | {count / run:.1f} | {total:.1f} | "
            f"{count / total:.1f} | {baseline / run:.2f}x |"
        )
    return "\n".join(rows)


def section_text(table: str, args: argparse.Namespace, load: str) -> str:
    return (
        f"{SECTION_HEADING}\n\n"
        f"`prodet predict FOLDER --format json --no-draw` on {args.count} images ({args.images}"
        " and flipped, downscaled JPEG variants of them), model "
        f"`{args.model}`, {args.repeats} round(s), configurations interleaved, median. "
        "'run' is the run's own time from its summary line (walk, decode, inference, "
        "writing; with Ray also the actors' start, each loading the model); 'end-to-end' "
        "the whole command (Python, the driver's model load and the Ray cluster's start "
        "included). Every configuration wrote the same detections.\n\n"
        f"{table}\n\n"
        "On 2 cores Ray Data cannot beat one in-process onnxruntime session, which already "
        "uses both cores: its actors split the same 2 CPUs, and the cluster's start-up, "
        "the object store and a second copy of the model only add cost. Ray pays off with "
        "more machines (or GPUs) than one process can use.\n\n"
        f"{run_lines(load)}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="prodet predict: in process vs Ray Data actors.")
    p.add_argument("--model", type=Path, required=True, help="the ONNX model")
    p.add_argument(
        "--images",
        type=Path,
        default=Path("../shared/data/commodity_voc/JPEGImages"),
        help="folder of real images to make the variants from",
    )
    p.add_argument("--count", type=int, default=500, help="images per run (default 500)")
    p.add_argument("--repeats", type=int, default=1, help="rounds (default 1)")
    p.add_argument("--write", type=Path, metavar="PATH", help="replace the section in PATH")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load = load_note()
    with tempfile.TemporaryDirectory(prefix="prodet-bench-predict-") as workdir:
        images = Path(workdir) / "images"
        write_variants(args.images, images, args.count)
        reference: dict[str, list[object]] | None = None
        for round_ in range(args.repeats):
            for i, config in enumerate(CONFIGS):
                out = Path(workdir) / f"out-{round_}-{i}"
                run_config(config, args.model, images, out, args.count)
                found = records(out)
                if reference is None:
                    reference = found
                elif found != reference:
                    raise SystemExit(f"{config.name} ({config.workers}): other detections")
                print(f"{config.name} ({config.workers}): {config.runs[-1]:.1f} s", flush=True)
    table = format_table(CONFIGS, args.count)
    print(table)
    if args.write:
        write_section(args.write, SECTION_HEADING, section_text(table, args, load))
        print(f"wrote the '{SECTION_HEADING}' section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
