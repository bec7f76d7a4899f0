"""``prodet predict``: the service's pre- and post-processing on images, no HTTP.

Two modes, by the arguments (``serve.image_source``):

* file mode, only image files: each is detected and reported on a line, outputs named by
  stem and rewritten on every run, as ``prodet predict`` always did;
* batch mode, any folder or glob: a lazy walk, a progress bar, failures in
  ``OUT/errors.jsonl``, a summary; a rerun skips the images already done
  (``serve.batch_predict``).

Both run in this process, or on Ray Data actors with ``--ray-address``
(``serve.batch_cluster``), and write ``--format json|coco|voc``
(``serve.prediction_outputs``, ``serve.coco_outputs``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prodet.serve.batch_cluster import ClusterError, RayRunError, require_ray
from prodet.serve.batch_predict import (
    DEFAULT_CHUNK_SIZE,
    BatchSummary,
    Detector,
    ErrorLog,
    LocalDetector,
    check_run,
    run_batch,
)
from prodet.serve.coco_outputs import CocoWriter
from prodet.serve.image_source import ImageInput, ImageSource
from prodet.serve.model_runner import ModelLoadError, ModelRunner
from prodet.serve.postprocess import DetectionFilter
from prodet.serve.predict import ImageFailure, ImageOutcome
from prodet.serve.prediction_outputs import (
    JsonWriter,
    OutputBusyError,
    OutputFolder,
    OutputSpaceError,
    PredictionWriter,
    VocWriter,
)
from prodet.serve.settings import DEFAULT_MAX_PIXELS, PROVIDERS

FORMATS = ("json", "coco", "voc")
_PREDICT_DESCRIPTION = (
    "Detect objects in images with the service's pre- and post-processing. Give image "
    "files (each reported on a line; outputs named by stem) or folders and quoted globs "
    "(a batch: walked lazily, resumable, failures in OUT/errors.jsonl). --format json "
    "writes NAME.json and NAME.png (boxes drawn) per image; coco a COCO results file and "
    "its image-info file; voc a Pascal VOC folder for LabelImg, CVAT and prodet convert."
)


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodet predict", description=_PREDICT_DESCRIPTION)
    parser.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image files, folders (every image below them) or globs ('shelf/**/*.jpg')",
    )
    parser.add_argument("--model", required=True, type=Path, help="the ONNX model file")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--format", default="json", choices=FORMATS, help="default: json")
    parser.add_argument(
        "--draw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also write NAME.png with the boxes drawn (--format json; default: on)",
    )
    parser.add_argument(
        "--voc-images",
        default="link",
        choices=("link", "copy"),
        help="--format voc: OUT/JPEGImages holds symbolic links to the images (default) "
        "or copies (to move OUT elsewhere)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="batch mode: redo every image, also those done by an earlier run",
    )
    parser.add_argument("--provider", default="auto", choices=PROVIDERS)
    parser.add_argument("--score-threshold", type=float, help="default: the model's score_thresh")
    parser.add_argument("--max-detections", type=int, help="keep at most this many per image")
    parser.add_argument("--classes", nargs="+", help="keep only these class names")
    parser.add_argument("--batch-size", type=int, default=8, help="images per inference batch")
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image (w*h)"
    )
    parser.add_argument(
        "--fast-jpeg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode JPEGs at the smallest DCT scale the model input allows, as `prodet "
        "serve` does (default); annotated PNGs of JPEGs are then drawn at that size",
    )
    cluster = parser.add_argument_group("Ray Data (the cluster extra)")
    cluster.add_argument(
        "--ray-address",
        help="run on Ray Data actors: 'local' starts a Ray cluster on this machine for the "
        "run; 'auto', HOST:PORT or ray://HOST:PORT joins a running one (images and model "
        "must be at the same paths on its nodes). Default: in this process, no Ray",
    )
    cluster.add_argument(
        "--workers", type=int, help="actors, each with one model session (default 1)"
    )
    cluster.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        help="CPUs each actor reserves; also its onnxruntime threads (default 1)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="images taken from the walk at a time; with Ray, one dataset (and one start "
        f"of the actors) each (default {DEFAULT_CHUNK_SIZE})",
    )
    return parser


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.batch_size < 1:
        return "--batch-size must be at least 1"
    if args.chunk_size < 1:
        return "--chunk-size must be at least 1"
    if args.draw and args.format != "json":
        return "--draw writes PNGs beside the JSON files of --format json only"
    if args.workers is not None and args.ray_address is None:
        return "--workers needs --ray-address (in this process one session uses every core)"
    if args.workers is not None and args.workers < 1:
        return "--workers must be at least 1"
    if args.cpus_per_worker <= 0:
        return "--cpus-per-worker must be positive"
    if args.out.is_dir() and any(p.is_dir() and p.samefile(args.out) for p in args.images):
        return f"--out {args.out} is an input folder: give a new folder (or one inside it)"
    return None


def _writer(
    args: argparse.Namespace, folder: OutputFolder, runner: ModelRunner, draw: bool
) -> PredictionWriter:
    if args.format == "voc":
        return VocWriter(folder, images=args.voc_images, classes=runner.metadata.classes[1:])
    if args.format == "coco":
        info = {
            "description": "prodet predict",
            "model_id": runner.model_id,
            "model_version": runner.version,
        }
        return CocoWriter(folder, classes=runner.metadata.classes, info=info)
    return JsonWriter(folder, draw=draw)


def _run_options(args: argparse.Namespace, runner: ModelRunner, draw: bool) -> dict[str, Any]:
    """What shapes a batch run's outputs: a rerun must have the same to resume."""
    return {
        "inputs": [os.path.abspath(a) for a in args.images],
        "format": args.format,
        "model_sha256": runner.sha256,
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "classes": sorted(args.classes) if args.classes else None,
        "max_pixels": args.max_pixels,
        "fast_jpeg": args.fast_jpeg,
        "draw": draw if args.format == "json" else None,
        "voc_images": args.voc_images if args.format == "voc" else None,
    }


@contextlib.contextmanager
def _detector(
    args: argparse.Namespace, runner: ModelRunner, keep: dict[str, Any], draw: bool
) -> Iterator[Detector]:
    if args.ray_address is None:
        yield LocalDetector(
            runner,
            DetectionFilter.build(runner.metadata, **keep),
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
            fast_jpeg=args.fast_jpeg,
            draw=draw,
        )
        return
    from prodet.serve.batch_cluster import ActorOptions, RayDetector, ray_cluster

    actor = ActorOptions(
        model=str(args.model.resolve()),
        provider=args.provider,
        intra_op_threads=max(1, int(args.cpus_per_worker)),
        keep=keep,
        batch_size=args.batch_size,
        max_pixels=args.max_pixels,
        fast_jpeg=args.fast_jpeg,
        draw=draw,
    )
    workers = args.workers or 1
    with ray_cluster(args.ray_address, cpus_needed=workers * args.cpus_per_worker):
        yield RayDetector(actor, workers=workers, cpus_per_worker=args.cpus_per_worker)


def _file_report(writer: PredictionWriter) -> Callable[[ImageInput, ImageOutcome], None]:
    def report(item: ImageInput, outcome: ImageOutcome) -> None:
        if isinstance(outcome, ImageFailure):
            print(f"prodet predict: {item.path}: {outcome.reason}", file=sys.stderr)
        else:
            count = len(outcome.record["detections"])
            print(f"{item.path}: {count} detections -> {writer.shown(item)}")

    return report


def predict_main(argv: list[str]) -> int:
    """``prodet predict``: exit 0 when every image was processed, 1 if any failed or the
    run stopped, 2 for a usage problem."""
    args = _predict_parser().parse_args(argv)
    problem = _usage_problem(args)
    if problem is not None:
        print(f"prodet predict: {problem}", file=sys.stderr)
        return 2
    source = ImageSource([str(p) for p in args.images], exclude=str(args.out))
    batch = not source.file_mode
    if args.ray_address is not None:
        try:
            require_ray()
        except ClusterError as exc:
            print(f"prodet predict: {exc}", file=sys.stderr)
            return 2
    # With Ray the actors run the model on --provider; this process only checks the file and
    # reads its metadata, so it holds a one-thread CPU session (no GPU taken on the driver).
    on_ray = args.ray_address is not None
    try:
        runner = ModelRunner.load(
            args.model,
            provider="cpu" if on_ray else args.provider,
            warmup_batch=1,
            intra_op_threads=1 if on_ray else 0,
        )
    except ModelLoadError as exc:
        print(f"prodet predict: {exc}", file=sys.stderr)
        return 1
    keep: dict[str, Any] = {
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "classes": args.classes,
    }
    draw = args.format == "json" and args.draw is not False
    try:
        DetectionFilter.build(runner.metadata, **keep)
        summary = _run(args, source, runner, keep, draw)
    except (ValueError, OutputBusyError, ClusterError) as exc:  # RunMismatchError: a ValueError
        print(f"prodet predict: {exc}", file=sys.stderr)
        return 2
    except OutputSpaceError as exc:
        print(f"prodet predict: stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "prodet predict: interrupted; every image written so far is complete: rerun the "
            "same command to resume",
            file=sys.stderr,
        )
        return 130
    except RayRunError as exc:
        print(f"prodet predict: {exc}", file=sys.stderr)
        return 1
    if batch:
        print(f"prodet predict: {summary.describe(args.out)}")
    return 1 if summary.failed else 0


def _run(
    args: argparse.Namespace,
    source: ImageSource,
    runner: ModelRunner,
    keep: dict[str, Any],
    draw: bool,
) -> BatchSummary:
    batch = not source.file_mode
    with OutputFolder(args.out) as folder:
        writer = _writer(args, folder, runner, draw)
        errors = None
        if batch:
            check_run(folder, _run_options(args, runner, draw), overwrite=args.overwrite)
            errors = ErrorLog(folder)
        try:
            with _detector(args, runner, keep, draw) as detector:
                return run_batch(
                    source,
                    detector,
                    writer,
                    errors=errors,
                    resume=batch and not args.overwrite,
                    chunk_size=args.chunk_size,
                    report=None if batch else _file_report(writer),
                    progress=None if batch else False,
                )
        finally:
            if errors is not None:
                errors.close()
