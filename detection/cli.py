"""``prodet train`` and ``prodet evaluate``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prodet.annotations.schema import VocDataset
    from prodet.detection.config import TrainConfig

# (model.onnx, dataset.pkl, split, out folder, *, batch_size) -> the evaluation summary.
OnnxEvaluator = Callable[..., dict[str, Any]]

# Flags that map one-to-one onto config keys: flag -> (config key, type, help).
_FLAG_KEYS: dict[str, tuple[str, type, str]] = {
    "--data": ("data", str, "dataset .pkl from `prodet convert`"),
    "--head": ("head", str, "ssd or fast_rcnn"),
    "--backbone": ("backbone", str, "efficientnet_lite0, resnet50, vgg16, mobilenet_v3_large"),
    "--out": ("out", str, "run folder (checkpoints, metrics, plots)"),
    "--backbone-weights": ("backbone_weights", str, "default, none, or a .pth file"),
    "--epochs": ("epochs", int, "maximum epochs"),
    "--batch-size": ("batch_size", int, "images per batch (per process)"),
    "--lr": ("lr", float, "base learning rate (head)"),
    "--optimizer": ("optimizer", str, "sgd or adamw"),
    "--schedule": ("schedule", str, "cosine, step, exponential or constant"),
    "--size": ("size", int, "square input side in pixels"),
    "--freeze": ("freeze", int, "freeze the first N backbone stages"),
    "--workers": ("workers", int, "data-loader processes"),
    "--seed": ("seed", int, "seed of everything random"),
    "--max-minutes": ("max_minutes", float, "time budget; the schedule anneals inside it"),
    "--val-split": (
        "val_split",
        str,
        "validation split (default val, carved from the train split when absent); "
        "none trains on all of it and best.pt is the last epoch",
    ),
    "--patience": ("patience", int, "stop after N epochs without val mAP improvement"),
    "--preset": ("preset", str, "augmentation preset: ssd, scale, light or eval"),
    "--mosaic": ("mosaic", float, "probability of a 2x2 mosaic of training images (0 to 1)"),
    "--cache": (
        "cache",
        str,
        "decoded-image cache: ram (default, within cache_mb), disk (cache_dir, reused "
        "across runs) or none",
    ),
    "--proposals-file": (
        "fast_rcnn.proposals_file",
        str,
        "Fast R-CNN: precomputed proposals (.npz from detection.proposals.save_proposals) "
        "instead of the RPN; needs --preset eval",
    ),
}


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodet train",
        description="Train a detector on a converted dataset. Precedence: defaults < "
        "--recipe auto's choices < --config YAML < flags and --set KEY=VALUE.",
    )
    p.add_argument(
        "--config", type=Path, help="YAML file of config keys (see config.yaml of a run)"
    )
    for flag, (_, kind, text) in _FLAG_KEYS.items():
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--ema", action="store_true", default=None, help="keep an EMA of the weights")
    p.add_argument(
        "--pca-color", action="store_true", default=None, help="AlexNet PCA colour noise"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. ssd.min_scale=0.1",
    )
    p.add_argument(
        "--recipe",
        choices=("auto", "none"),
        default="auto",
        help="auto (default): choose size, augmentation, feature pyramid, EMA, frozen stages, "
        "lr, epochs and validation from the dataset's statistics and the budget, print each "
        "choice with its reason, save them (config.yaml, recipe.yaml); any key you set "
        "wins. none: the plain defaults",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from last.pt, with its saved config.yaml",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _say(text: str) -> None:
    """Print on the main process only (torchrun starts one ``prodet train`` per rank)."""
    if os.environ.get("RANK", "0") == "0":
        print(text, flush=True)


def _resolve_config(
    args: argparse.Namespace, overrides: dict[str, Any], user: TrainConfig
) -> tuple[TrainConfig, dict[str, str], VocDataset | None]:
    """The run's config and the extra files of its folder.

    ``user`` is the user's config (defaults, ``--config``, flags). ``--resume`` puts the
    saved ``config.yaml`` under the user's keys instead of choosing again; ``--recipe
    auto`` puts its choices there.
    """
    from prodet.detection.config import explicit_keys, load_config, yaml_keys

    if args.resume:
        saved = Path(user.out) / "config.yaml"
        if not saved.is_file():
            return user, {}, None  # fit says there is nothing to resume
        _say(f"--resume: the saved {saved}, under your flags (nothing is chosen again)")
        return load_config(args.config, overrides, base=yaml_keys(saved)), {}, None
    if args.recipe == "none":
        return user, {}, None
    from prodet.annotations.pickle_store import load_dataset
    from prodet.detection.recipe import build_recipe

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    voc = load_dataset(user.data)
    recipe = build_recipe(voc, user, explicit_keys(args.config, overrides), cpus=cpus or 1)
    _say(recipe.table())
    config = load_config(args.config, overrides, base=recipe.overrides())
    # The recipe's choices never change the data path, so fit reuses this load.
    return config, {"recipe.yaml": recipe.to_yaml()}, voc if config.data == user.data else None


def train_main(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from prodet.detection.config import load_config, parse_overrides

    overrides: dict[str, Any] = {}
    for flag, (key, _, _) in _FLAG_KEYS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides[key] = value
    if args.ema:
        overrides["ema"] = True
    if args.pca_color:
        overrides["pca_color"] = True
    try:
        overrides.update(parse_overrides(args.set))
        user = load_config(args.config, overrides)
        if not user.data:
            raise ValueError("--data is required: the dataset .pkl written by `prodet convert`")
        config, run_files, voc = _resolve_config(args, overrides, user)
        from prodet.detection.trainer import fit

        result = fit(
            config,
            resume=args.resume,
            progress=not args.quiet and sys.stderr.isatty(),
            run_files=run_files,
            voc=voc,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"prodet train: {exc}", file=sys.stderr)
        return 2
    best = (
        f"best val VOC mAP@0.5 {result.best_map:.4f}"
        if result.best_map >= 0
        else "no validation (val_split none): best.pt is the last epoch"
    )
    print(
        f"{result.epochs_done} epochs ({result.stopped_because}); {best}; run folder {result.run_dir}"
    )
    return 0


def _evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodet evaluate",
        description="VOC07 11-point and area AP@0.5, COCO mAP@[.5:.95], per-class table, "
        "PR curves, COCO-format predictions (image ids of `prodet convert --coco`) and a "
        "confusion matrix for one split.",
    )
    p.add_argument("--checkpoint", type=Path, help="a checkpoint from `prodet train` (best.pt)")
    p.add_argument(
        "--onnx",
        type=Path,
        help="instead of --checkpoint: a model from `prodet export`, run in onnxruntime (CPU)",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset .pkl")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument(
        "--out", type=Path, help="output folder (default: eval-<split>/ beside the checkpoint)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    ema = p.add_mutually_exclusive_group()
    ema.add_argument(
        "--ema", action="store_true", default=None, help="the EMA weights (default when kept)"
    )
    ema.add_argument("--no-ema", dest="ema", action="store_false", help="the raw weights")
    p.add_argument(
        "--proposals",
        type=int,
        help="Fast R-CNN: RoIs per image at test time (default: the run's rpn_post_nms_test)",
    )
    p.add_argument(
        "--proposals-file",
        type=Path,
        help="Fast R-CNN: precomputed proposals (.npz) instead of the RPN's "
        "(default: the run's fast_rcnn.proposals_file)",
    )
    return p


def evaluate_main(argv: list[str], *, evaluate_onnx: OnnxEvaluator | None = None) -> int:
    """``prodet evaluate``; ``--onnx`` runs ``evaluate_onnx``, which the command layer
    injects (ONNX evaluation belongs to the later export stage)."""
    args = _evaluate_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if (args.checkpoint is None) == (args.onnx is None):
        print("prodet evaluate: give one of --checkpoint or --onnx", file=sys.stderr)
        return 2
    try:
        if args.onnx is not None:
            if evaluate_onnx is None:
                print("prodet evaluate: --onnx needs the export stage", file=sys.stderr)
                return 2
            out = args.out or args.onnx.parent / f"eval-{args.onnx.stem}-{args.split}"
            summary = evaluate_onnx(
                args.onnx, args.data, args.split, out, batch_size=args.batch_size
            )
        else:
            from prodet.detection.checkpoint_eval import evaluate_checkpoint

            out = args.out or args.checkpoint.parent / f"eval-{args.split}"
            summary = evaluate_checkpoint(
                args.checkpoint,
                args.data,
                args.split,
                out,
                batch_size=args.batch_size,
                use_ema=args.ema,
                proposals=args.proposals,
                proposals_file=args.proposals_file,
            )
    except (ValueError, FileNotFoundError) as exc:
        print(f"prodet evaluate: {exc}", file=sys.stderr)
        return 2
    print(summary["table"])
    print(json.dumps(summary["headline"], indent=2))
    print(
        f"wrote {out}/ (summary.json, per_class.md, pr_curves.png, predictions_coco.json, "
        "confusion.csv, confusion.png)"
    )
    return 0
