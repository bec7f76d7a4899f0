"""Benchmark exported models: onnxruntime (CPU) against PyTorch eager, same model, same images.

For each checkpoint given, ``prodet export``'s pipeline writes the fp32 graph (parity gate
included) and, unless ``--no-int8``, the int8 graph calibrated on the training split. The
first ``--images`` images of ``--split`` (default ``test``) go through the eval transform
once; then every engine runs them at batch size 1 and 8 for ``--repeats`` timed passes
after one warm-up pass, the engines interleaved pass by pass so that a change of machine
load hits all of them alike. Only the model call is timed (decode and resize excluded);
PyTorch's time includes its models' internal transform and the per-image post-processing,
onnxruntime's the run and unpadding. Each engine is timed with each of ``--threads``
(default 1 and nproc; torch and onnxruntime alike). The VOC mAP@0.5 (area) of each engine
is measured over the whole split.

Run from the repository root::

    python bench/export_speed.py runs/ssd/best.pt runs/fast_rcnn/best.pt
    python bench/export_speed.py runs/ssd/best.pt --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from bench_report import load_note, run_lines, write_section

from prodet.annotations.pickle_store import load_dataset
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.checkpoint_eval import eval_transform, model_from_checkpoint
from prodet.detection.evaluate import evaluate_model
from prodet.export.onnx_contract import parse_metadata
from prodet.export.onnx_evaluate import eval_dataset, evaluate_session
from prodet.export.onnx_export import checkpoint_val_map
from prodet.export.ort_runner import open_session, run_batches
from prodet.export.pipeline import ExportOptions, export_checkpoint

SECTION_HEADING = "## Export speed"
BATCH_SIZES = (1, 8)


Runner = Callable[[int], None]  # runs every timed image at one batch size


@dataclass
class Engine:
    """One way of running the model: ``prepare(threads)`` gives its runner; its test mAP."""

    head: str
    name: str
    prepare: Callable[[int], Runner]
    test_map: float
    seconds: dict[tuple[int, int], list[float]]


def _torch_engine(model: torch.nn.Module, images: torch.Tensor) -> Callable[[int], Runner]:
    def prepare(threads: int) -> Runner:
        def run(batch: int) -> None:
            torch.set_num_threads(threads)
            with torch.no_grad():
                for start in range(0, len(images), batch):
                    model(images[start : start + batch])

        return run

    return prepare


def _ort_engine(path: Path, images: np.ndarray) -> Callable[[int], Runner]:
    def prepare(threads: int) -> Runner:
        session = open_session(path, threads=threads)

        def run(batch: int) -> None:
            run_batches(session, images, batch)

        return run

    return prepare


def describe(checkpoint_path: Path) -> str:
    """``path`` (head, backbone, input size, epochs, its validation mAP) for the notes."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint["config"]
    val = checkpoint_val_map(checkpoint)
    return (
        f"`{checkpoint_path}` ({config['head']}, {config['backbone']}, "
        f"{checkpoint['input']['size']} px, {checkpoint['epoch']} epochs, val VOC mAP@0.5 "
        f"{'n/a' if val is None else f'{val:.4f}'})"
    )


def build_engines(
    checkpoint_path: Path, args: argparse.Namespace, workdir: Path, proposals: int | None = None
) -> list[Engine]:
    """PyTorch eager, onnxruntime fp32 and (optionally) int8 for one checkpoint; for Fast
    R-CNN at ``proposals`` RoIs per image (None: the checkpoint's setting)."""
    checkpoint = load_checkpoint(checkpoint_path)
    model, config = model_from_checkpoint(checkpoint, proposals=proposals)
    head = config.head
    if config.head == "fast_rcnn":
        head = f"fast_rcnn, {config.fast_rcnn.rpn_post_nms_test} RoIs"
    data = args.data or Path(config.data)
    voc = load_dataset(data)
    spec = checkpoint["input"]
    transform = eval_transform(spec)
    split = DetectionDataset(voc, args.split, transform=transform)
    if len(split) < args.images:
        raise ValueError(f"--images {args.images}: split {args.split!r} has {len(split)}")
    images = torch.stack([split[i][0] for i in range(args.images)])
    torch_map = evaluate_model(model, split, device=torch.device("cpu")).voc.map_area
    engines = [Engine(head, "PyTorch eager fp32", _torch_engine(model, images), torch_map, {})]
    precisions = ["fp32"] if args.no_int8 else ["fp32", "int8"]
    for precision in precisions:
        options = ExportOptions(
            precision=precision,
            data=data,
            calibration=data,
            threads=max(args.threads),
            proposals=proposals,
        )
        path = workdir / f"{config.head}-{proposals}-{precision}.onnx"
        result = export_checkpoint(checkpoint_path, path, options)
        session = open_session(path, threads=max(args.threads))
        metadata = parse_metadata(result.metadata)
        test_map = evaluate_session(session, eval_dataset(voc, args.split, metadata)).voc.map_area
        name = f"onnxruntime CPU {precision}"
        engines.append(Engine(head, name, _ort_engine(path, images.numpy()), test_map, {}))
    return engines


def time_engines(engines: list[Engine], threads: int, repeats: int) -> None:
    """Fill ``engine.seconds[(threads, batch)]`` with ``repeats`` timed passes, engines
    interleaved pass by pass."""
    runners = [engine.prepare(threads) for engine in engines]
    for batch in BATCH_SIZES:
        for engine, run in zip(engines, runners, strict=True):
            run(batch)  # warm-up
            engine.seconds[(threads, batch)] = []
        for _ in range(repeats):
            for engine, run in zip(engines, runners, strict=True):
                started = time.perf_counter()
                run(batch)
                engine.seconds[(threads, batch)].append(time.perf_counter() - started)


def format_table(engines: list[Engine], images: int) -> str:
    """Markdown rows: ms/image, images/s and speed-up against the same head's eager run."""
    lines = [
        "| head | engine | threads | batch | ms/image | images/s | vs PyTorch eager "
        "| test VOC mAP@0.5 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    eager = {
        (e.head, key): statistics.median(seconds)
        for e in engines
        if e.name.startswith("PyTorch")
        for key, seconds in e.seconds.items()
    }
    for engine in engines:
        for (threads, batch), seconds in sorted(engine.seconds.items()):
            median = statistics.median(seconds)
            speedup = eager[(engine.head, (threads, batch))] / median
            lines.append(
                f"| {engine.head} | {engine.name} | {threads} | {batch} | "
                f"{1000 * median / images:.1f} | {images / median:.1f} | {speedup:.2f}x | "
                f"{engine.test_map:.4f} |"
            )
    return "\n".join(lines)


def machine_description() -> str:
    """nproc, CPU model, Python, torch and onnxruntime versions."""
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"nproc {len(os.sched_getaffinity(0))}, {model}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}"
    )


def section_text(table: str, args: argparse.Namespace, load: str, images: int) -> str:
    checkpoints = "; ".join(describe(p) for p in args.checkpoints)
    return (
        f"{SECTION_HEADING}\n\n"
        f"onnxruntime CPU against PyTorch eager on the same trained checkpoints ({checkpoints}) "
        f"and the same {images} real images of the `{args.split}` split, already resized and "
        f"normalised; {' and '.join(map(str, args.threads))} threads (torch and onnxruntime "
        f"alike); one warm-up pass, then {args.repeats} "
        "timed passes (median), engines interleaved. The ONNX graphs come from `prodet "
        "export` (box decoding and NMS inside, parity gate passed); int8 is onnxruntime's "
        "static QDQ quantisation, calibrated on 64 training images. mAP over the whole "
        f"split.\n\n{table}\n\n"
        f"{run_lines(load, machine_description())}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="onnxruntime CPU vs PyTorch eager detection speed.")
    p.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints (one per head)")
    p.add_argument("--data", type=Path, help="dataset .pkl (default: each checkpoint's)")
    p.add_argument("--split", default="test", help="images to time and score (default test)")
    p.add_argument("--images", type=int, default=32, help="timed images (default 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (default 5)")
    p.add_argument(
        "--threads",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1, len(os.sched_getaffinity(0))],
        help="thread counts to time, e.g. 1,2 (default: 1 and nproc)",
    )
    p.add_argument("--no-int8", action="store_true", help="skip the int8 graph")
    p.add_argument(
        "--proposals",
        type=lambda text: [None if v == "default" else int(v) for v in text.split(",")],
        default=[None],
        help="Fast R-CNN test-time RoIs per image to time, e.g. default,100",
    )
    p.add_argument("--write", type=Path, metavar="PATH", help="replace the section in PATH")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.threads = sorted(set(args.threads))
    torch.set_num_threads(args.threads[0])  # untimed work: exports, gates, mAP
    load = load_note()
    engines: list[Engine] = []
    with tempfile.TemporaryDirectory(prefix="prodet-bench-export-") as workdir:
        for path in args.checkpoints:
            head = load_checkpoint(path)["config"]["head"]
            for proposals in args.proposals if head == "fast_rcnn" else [None]:
                engines += build_engines(path, args, Path(workdir), proposals)
        for threads in args.threads:
            time_engines(engines, threads, args.repeats)
    table = format_table(engines, args.images)
    print(table)
    if args.write:
        write_section(args.write, SECTION_HEADING, section_text(table, args, load, args.images))
        print(f"wrote the '{SECTION_HEADING}' section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
