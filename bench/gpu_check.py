"""One command that checks prodet on a GPU machine: train, evaluate, time, export, time again.

For each head (SSD, then Fast R-CNN; EfficientNet-Lite0 backbone, ImageNet weights):

1. train ``--steps`` steps with the product's own loop (``detection.trainer.fit``; AMP on
   CUDA, which ``TrainConfig.amp`` turns on there) on the dataset's ``trainval`` split;
2. evaluate the checkpoint on the ``test`` split (``detection.evaluate.evaluate_model``,
   VOC area mAP@0.5);
3. time PyTorch eager fp32 inference at batch 1 and 8 on ``--timing-images`` real images of
   that split (resized and normalised once; one warm-up pass, then ``--repeats`` timed
   passes, median; ``torch.cuda.synchronize`` before and after each timed pass);
4. export to ONNX with ``prodet export``'s pipeline (``export.pipeline.export_checkpoint``:
   the parity gate against PyTorch on 16 real images at batch 1 and 8);
5. time that graph in onnxruntime the same way, with the best provider this onnxruntime
   build has (CUDA on a CUDA device, TensorRT when asked for with ``--ort-provider``,
   else the CPU); the table names the provider actually active.

It prints one markdown section, ready to paste into BENCHMARKS.md (machine, GPU, versions,
data, settings, command and date), and writes it to ``OUT/gpu_check.md`` with the raw
figures in ``OUT/gpu_check.json``. The whole command keeps to ``--max-minutes`` (default
8): each head's training gets an equal share of what is left after keeping
``RESERVE_S`` per head for the steps after training, and stops early (the trainer's own
``max_minutes``) when its share runs out.

Data: ``--data`` a dataset ``.pkl`` (``prodet convert``), a Pascal VOC folder (converted
into OUT), or ``synthetic`` (``prodet synth``'s generator, ``--synth-images`` images);
by default the course's commodity_voc beside the repository (``../shared/data``) or
inside it (``shared/data``), else ``synthetic``.

It runs from a bare copy of the repository too (prodet not pip-installed; see
``bench/bare_checkout.py``)::

    python bench/gpu_check.py --out out/gpu-check
    python bench/gpu_check.py --device cpu --steps 2 --data synthetic --synth-images 20 \\
        --size 128 --repeats 1    # what tests/bench/test_gpu_check.py runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import bare_checkout  # noqa: F401  (sets up prodet.* when prodet is not installed)
import numpy as np
import onnxruntime as ort
import torch
import torchvision
from bench_report import machine_description

from prodet.annotations.convert import convert_folder
from prodet.annotations.pickle_store import dump_dataset, load_dataset
from prodet.annotations.synthetic import generate_shelf_dataset
from prodet.datasets.detection_dataset import DetectionDataset
from prodet.detection.checkpoint import load_checkpoint
from prodet.detection.checkpoint_eval import eval_transform, model_from_checkpoint
from prodet.detection.config import NO_VALIDATION, TrainConfig, load_config
from prodet.detection.evaluate import evaluate_model
from prodet.detection.trainer import fit
from prodet.export.ort_runner import open_session, run_batches
from prodet.export.pipeline import ExportOptions, export_checkpoint
from prodet.serve.model_runner import requested_providers

REPO = Path(__file__).resolve().parents[1]
COMMODITY_CANDIDATES = (
    REPO.parent / "shared" / "data" / "commodity_voc",
    REPO / "shared" / "data" / "commodity_voc",
)
SYNTHETIC = "synthetic"
HEADS = ("ssd", "fast_rcnn")
BATCH_SIZES = (1, 8)
TRAIN_SPLIT = "trainval"
EVAL_SPLITS = ("test", "val")
# Seconds kept per head for what follows training (evaluation, timing, export, gate);
# measured at 10-15 s per head on 2 CPU cores at 320 px (commodity_voc).
RESERVE_S = 45.0
MIN_TRAIN_S = 5.0
# The training settings without --config: the README's commodity command at 320 px and
# without its EMA (an average of the weights helps little within a few hundred steps).
RECIPE = {
    "backbone": "efficientnet_lite0",
    "size": 320,
    "batch_size": 8,
    "lr": 0.01,
    "freeze": 2,
    "preset": "light",
}

logger = logging.getLogger("gpu_check")


@dataclasses.dataclass
class HeadResult:
    """The figures of one head; times in milliseconds per image."""

    head: str
    steps: int
    epochs: int
    stopped_because: str
    train_s: float
    train_images_per_s: float
    peak_gpu_mib: float | None
    voc_map: float
    eager_ms: dict[int, float]
    ort_provider: str
    ort_ms: dict[int, float]
    parity: str
    export_s: float
    settings: str


# ---------------------------------------------------------------------------- the data


def _convert(folder: Path, out: Path) -> Path:
    """``prodet convert`` of ``folder`` into ``out/NAME.pkl`` (reused when unchanged)."""
    target = out / f"{folder.name}.pkl"
    result = convert_folder(folder, previous_output=target, workers=min(os.cpu_count() or 1, 8))
    if result.dataset is None:
        raise SystemExit(f"cannot convert {folder}: {result.summary}")
    if not result.summary.reused:
        dump_dataset(result.dataset, target)
    return target


def prepare_data(args: argparse.Namespace, out: Path) -> tuple[Path, str]:
    """The dataset ``.pkl`` to use and a line describing where it came from."""
    data = args.data
    if data is None:
        data = next((str(p) for p in COMMODITY_CANDIDATES if p.is_dir()), SYNTHETIC)
    if data == SYNTHETIC:
        root = out / "synthetic_voc"
        generate_shelf_dataset(
            root,
            images=args.synth_images,
            size=(args.synth_size, args.synth_size),
            seed=args.seed,
            overwrite=True,
        )
        note = (
            f"synthetic shelves (`prodet synth`: {args.synth_images} images, "
            f"{args.synth_size} px, seed {args.seed}), converted"
        )
        return _convert(root, out), note
    path = Path(data)
    if path.is_dir():
        return _convert(path, out), f"`{path.name}` (VOC folder, converted)"
    if path.is_file():
        return path, f"`{path}`"
    raise SystemExit(f"--data {data}: neither a dataset .pkl, a VOC folder nor {SYNTHETIC!r}")


def eval_split(splits: dict[str, tuple[str, ...]], asked: str | None) -> str:
    """The split to evaluate and time on: ``asked``, else test, else val, else training."""
    if asked is not None:
        if asked not in splits:
            raise SystemExit(f"--eval-split {asked}: not in the dataset (has {sorted(splits)})")
        return asked
    return next((s for s in EVAL_SPLITS if s in splits), TRAIN_SPLIT)


# ---------------------------------------------------------------------------- timing


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_image(
    run_pass: Callable[[int], None], images: int, batch: int, repeats: int, device: torch.device
) -> float:
    """Median milliseconds per image of ``repeats`` passes of ``run_pass(batch)`` over
    ``images`` images, after one untimed warm-up pass."""
    run_pass(batch)
    seconds = []
    for _ in range(repeats):
        _synchronize(device)
        started = time.perf_counter()
        run_pass(batch)
        _synchronize(device)
        seconds.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(seconds) / images


def eager_pass(model: torch.nn.Module, images: torch.Tensor) -> Callable[[int], None]:
    """One pass of the eager model over ``images`` (already on its device), in batches."""

    def run(batch: int) -> None:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                model(images[start : start + batch])

    return run


def ort_pass(session: ort.InferenceSession, images: np.ndarray) -> Callable[[int], None]:
    def run(batch: int) -> None:
        run_batches(session, images, batch)

    return run


def ort_providers(choice: str, device: torch.device) -> list[str]:
    """onnxruntime providers to ask for; ``auto`` asks for CUDA only on a CUDA device."""
    if choice == "auto":
        choice = "cuda" if device.type == "cuda" else "cpu"
    return requested_providers(choice)


# ---------------------------------------------------------------------------- one head


def train_config(
    head: str, data: Path, run_dir: Path, args: argparse.Namespace, budget_s: float
) -> TrainConfig:
    """The run's config: ``--config`` (else ``RECIPE``) under this command's settings, with
    enough epochs for ``--steps`` (the trainer's unit is the epoch) and ``budget_s`` as its
    time budget. Validation is off: the evaluation comes after training."""
    voc = load_dataset(data)
    if TRAIN_SPLIT not in voc.splits:
        raise SystemExit(f"{data} has no {TRAIN_SPLIT!r} split (has {sorted(voc.splits)})")
    given = {"size": args.size, "batch_size": args.batch_size}
    config = load_config(
        args.config,
        {
            **({} if args.config else RECIPE),
            **{key: value for key, value in given.items() if value is not None},
            "data": str(data),
            "out": str(run_dir),
            "head": head,
            "train_split": TRAIN_SPLIT,
            "val_split": NO_VALIDATION,
            "patience": None,
            "workers": args.workers,
            "seed": args.seed,
            "amp": True,
            "max_minutes": budget_s / 60.0,
        },
    )
    steps_per_epoch = max(len(voc.splits[TRAIN_SPLIT]) // config.batch_size, 1)
    return dataclasses.replace(config, epochs=math.ceil(args.steps / steps_per_epoch))


def settings(config: TrainConfig) -> str:
    """The training settings the report names (those that differ between recipes)."""
    parts = [
        f"{config.backbone} (weights: {config.backbone_weights})",
        f"{config.size} px",
        f"batch {config.batch_size}",
        f"{config.optimizer} lr {config.lr:g}",
        f"{config.schedule} schedule",
        f"freeze {config.freeze}",
        f"preset {config.preset}",
        f"EMA {config.ema_decay:g}" if config.ema else "no EMA",
        f"{config.workers} loader workers",
        f"seed {config.seed}",
    ]
    if config.ssd.fpn_channels:
        parts.append(f"ssd.fpn_channels {config.ssd.fpn_channels}")
    return ", ".join(parts)


def check_head(
    head: str, data: Path, out: Path, args: argparse.Namespace, budget_s: float
) -> HeadResult:
    """Train, evaluate, time, export and time again one head (see the module doc)."""
    device = torch.device(args.device)
    run_dir = out / "runs" / head
    if run_dir.exists():
        shutil.rmtree(run_dir)  # this command's own output of an earlier invocation
    config = train_config(head, data, run_dir, args, budget_s)
    logger.info(
        "%s: training %d epochs (>= %d steps) within %.0f s",
        head,
        config.epochs,
        args.steps,
        budget_s,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.monotonic()
    trained = fit(config, progress=False)
    train_s = time.monotonic() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    checkpoint_path = run_dir / "best.pt"  # the last epoch: no validation split
    checkpoint = load_checkpoint(checkpoint_path)
    steps = int(checkpoint["scheduler"]["last_epoch"])  # LambdaLR steps once per batch

    voc = load_dataset(data)
    split = eval_split(voc.splits, args.eval_split)
    model, _ = model_from_checkpoint(checkpoint, channels_last=config.channels_last)
    model = model.to(device)
    dataset = DetectionDataset(voc, split, transform=eval_transform(checkpoint["input"]))
    evaluation = evaluate_model(model, dataset, device=device, batch_size=8)
    logger.info("%s: VOC mAP@0.5 %.4f on %s", head, evaluation.voc.map_area, split)

    count = max(args.timing_images, max(BATCH_SIZES))
    stacked = torch.stack([dataset[i][0] for i in range(min(count, len(dataset)))])
    images = stacked[torch.arange(count) % len(stacked)]
    on_device = images.to(device)
    eager = {
        b: time_per_image(eager_pass(model, on_device), count, b, args.repeats, device)
        for b in BATCH_SIZES
    }
    del model, on_device
    if device.type == "cuda":
        torch.cuda.empty_cache()

    onnx_path = out / f"{head}.onnx"
    started = time.monotonic()
    exported = export_checkpoint(
        checkpoint_path, onnx_path, ExportOptions(data=data, threads=args.threads)
    )
    export_s = time.monotonic() - started
    logger.info("%s: parity gate passed: %s", head, exported.parity.summary())
    session = open_session(
        onnx_path, threads=args.threads, providers=ort_providers(args.ort_provider, device)
    )
    provider = session.get_providers()[0]
    array = images.numpy()
    ort_ms = {
        b: time_per_image(ort_pass(session, array), count, b, args.repeats, device)
        for b in BATCH_SIZES
    }
    rates = [row["images_per_s"] for row in trained.history]
    gate = exported.parity
    worst = max((i.max_score_diff for i in gate.images), default=0.0)
    return HeadResult(
        head=head,
        steps=steps,
        epochs=trained.epochs_done,
        stopped_because=trained.stopped_because,
        train_s=train_s,
        train_images_per_s=statistics.median(rates) if rates else float("nan"),
        peak_gpu_mib=peak,
        voc_map=float(evaluation.voc.map_area),
        eager_ms=eager,
        ort_provider=provider,
        ort_ms=ort_ms,
        parity=f"passed, {len({i.image_id for i in gate.images})} img, max score diff {worst:.1e}",
        export_s=export_s,
        settings=settings(config),
    )


# ---------------------------------------------------------------------------- the report


def versions() -> str:
    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return (
        f"Python {platform.python_version()}, torch {torch.__version__} (CUDA {cuda}, "
        f"cuDNN {cudnn or 'none'}), torchvision {torchvision.__version__}, onnxruntime "
        f"{ort.__version__} (providers built in: {', '.join(ort.get_available_providers())})"
    )


def device_line(device: torch.device) -> str:
    if device.type != "cuda":
        return "CPU only (no GPU used)"
    props = torch.cuda.get_device_properties(device)
    return (
        f"{torch.cuda.get_device_name(device)}, {props.total_memory / 2**30:.0f} GiB, "
        f"compute capability {props.major}.{props.minor}"
    )


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def report(
    results: list[HeadResult],
    args: argparse.Namespace,
    data_note: str,
    split: str,
    wall_s: float,
) -> str:
    """The markdown section: a sentence, the table, the run's lines."""
    device = torch.device(args.device)
    precision = "AMP (fp16 autocast, GradScaler)" if device.type == "cuda" else "fp32"
    header = (
        "| head | steps | epochs | train s | train img/s | peak GPU MiB | "
        f"{split} VOC mAP@0.5 | eager ms/img b1 | eager ms/img b8 | onnxruntime provider | "
        "ORT ms/img b1 | ORT ms/img b8 | parity gate |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n"
    )
    rows = "".join(
        f"| {r.head} | {r.steps} | {r.epochs} | {r.train_s:.1f} | {r.train_images_per_s:.1f} | "
        f"{'-' if r.peak_gpu_mib is None else f'{r.peak_gpu_mib:.0f}'} | {r.voc_map:.4f} | "
        f"{_ms(r.eager_ms[1])} | {_ms(r.eager_ms[8])} | {r.ort_provider} | "
        f"{_ms(r.ort_ms[1])} | {_ms(r.ort_ms[8])} | {r.parity} |\n"
        for r in results
    )
    stops = ", ".join(f"{r.head} {r.stopped_because}" for r in results)
    distinct = {r.settings for r in results}
    settings_line = (
        distinct.pop()
        if len(distinct) == 1
        else "; ".join(f"{r.head}: {r.settings}" for r in results)
    )
    if args.config:
        settings_line += f" (recipe `{args.config}`)"
    command = shlex.join(["python", *sys.argv])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "## GPU check\n\n"
        f"`bench/gpu_check.py` on {device.type}: each head trained for {args.steps} steps "
        "(rounded up to whole epochs, unless the time budget stopped it first; the steps "
        f"column counts those run) with prodet's trainer in {precision}, evaluated on the "
        f"`{split}` split, timed in PyTorch eager fp32 and, after `prodet export` (parity "
        "gate), in "
        f"onnxruntime. Times: {args.timing_images} real images of the split, resized and "
        f"normalised once; one warm-up pass, then the median of {args.repeats} passes, "
        "synchronised with the device. Train img/s: the median over epochs of the training "
        "loop's rate.\n\n" + header + rows + "\n"
        f"- Device: {device_line(device)}\n"
        f"- Machine: {machine_description()}\n"
        f"- Versions: {versions()}\n"
        f"- Data: {data_note}; trained on `{TRAIN_SPLIT}`, evaluated and timed on `{split}`\n"
        f"- Settings: {settings_line}; stopped by: {stops}\n"
        f"- Total: {wall_s / 60:.1f} min (budget {args.max_minutes:g} min)\n"
        f"- Command: `{command}`\n"
        f"- Date: {date}\n"
    )


# ---------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda if available")
    parser.add_argument("--steps", type=int, default=300, help="training steps per head")
    parser.add_argument("--out", type=Path, default=Path("out/gpu-check"))
    parser.add_argument(
        "--data", help=f"a dataset .pkl, a VOC folder or {SYNTHETIC!r} (default: commodity_voc)"
    )
    parser.add_argument("--max-minutes", type=float, default=8.0, help="the whole command's budget")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument(
        "--config", type=Path, help="a training recipe (configs/NAME.yaml) both heads train with"
    )
    parser.add_argument("--size", type=int, help="input size in pixels (default: 320)")
    parser.add_argument("--batch-size", type=int, help="default: 8")
    parser.add_argument("--workers", type=int, help="loader workers (default: 4 on cuda, 0 on cpu)")
    parser.add_argument("--eval-split", help="default: test, else val, else trainval")
    parser.add_argument("--timing-images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per batch size")
    parser.add_argument(
        "--ort-provider",
        choices=("auto", "tensorrt", "cuda", "cpu"),
        default="auto",
        help="auto: CUDA on a CUDA device when onnxruntime has it, else the CPU",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime CPU threads")
    parser.add_argument("--synth-images", type=int, default=200)
    parser.add_argument("--synth-size", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def resolve_device(asked: str | None) -> str:
    """``cuda`` or ``cpu``; with ``cpu`` asked for, CUDA is hidden from torch and onnxruntime."""
    if asked == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything initialises CUDA
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if asked == "cuda":
        raise SystemExit("--device cuda: torch sees no CUDA device (torch.cuda.is_available())")
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.max_minutes <= 0:
        raise SystemExit("--steps and --repeats must be at least 1, --max-minutes positive")
    started = time.monotonic()
    deadline = started + args.max_minutes * 60.0
    args.device = resolve_device(args.device)
    if args.workers is None:
        args.workers = min(4, os.cpu_count() or 1) if args.device == "cuda" else 0
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data, data_note = prepare_data(args, out)
    results = []
    for index, head in enumerate(args.heads):
        heads_left = len(args.heads) - index
        left = deadline - time.monotonic() - RESERVE_S * heads_left
        results.append(check_head(head, data, out, args, max(left / heads_left, MIN_TRAIN_S)))
    wall_s = time.monotonic() - started
    split = eval_split(load_dataset(data).splits, args.eval_split)
    section = report(results, args, data_note, split, wall_s)
    (out / "gpu_check.md").write_text(section, encoding="utf-8")
    (out / "gpu_check.json").write_text(
        json.dumps([dataclasses.asdict(r) for r in results], indent=2), encoding="utf-8"
    )
    print(section)
    if wall_s > args.max_minutes * 60.0:
        logger.warning("took %.1f min, over the %g min budget", wall_s / 60, args.max_minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
