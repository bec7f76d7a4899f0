"""``prodet tune``: search training hyperparameters with Optuna (see tune.py)."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from prodet.detection.config import HEADS, parse_overrides


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prodet tune",
        description="Search training hyperparameters with Optuna (TPE sampler, median "
        "pruning on validation mAP). Each trial trains for --trial-minutes; its value is "
        "the mean validation VOC mAP@0.5 of its last --tail epochs. Writes DIR/best.yaml "
        "(for `prodet train --config`), DIR/trials.csv and plots. Rerunning continues the "
        "study; processes given the same --storage share it.",
    )
    p.add_argument("--data", help="dataset .pkl from `prodet convert` (or data: in --config)")
    p.add_argument("--head", choices=HEADS, required=True)
    p.add_argument("--trials", type=int, default=20, help="trials this process runs (default 20)")
    p.add_argument(
        "--trial-minutes", type=float, default=5.0, help="training budget of a trial (default 5)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--storage",
        help="study storage: sqlite:///FILE.db, postgresql://USER:PASSWORD@HOST:PORT/DB, "
        "mysql+pymysql://... or a file path (SQLite); default: DIR/study.db",
    )
    p.add_argument("--study", help="study name (default: DATASET-HEAD)")
    p.add_argument(
        "--space",
        type=Path,
        help="search space YAML (default: configs/tune/HEAD.yaml, package data of prodet.configs)",
    )
    p.add_argument("--config", type=Path, help="base recipe; the space's keys override it")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a base config key the space does not search, e.g. workers=1",
    )
    p.add_argument("--epochs", type=int, default=1000, help="epoch cap of a trial (default 1000)")
    p.add_argument(
        "--tail", type=int, default=3, help="epochs averaged into a trial's value (default 3)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train each trial with this many seeds (each its own validation carve) and "
        "average; costs that many times --trial-minutes (default 1)",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="seconds between a trial's heartbeats; a trial silent for twice that is failed "
        "and retried once (default 30)",
    )
    p.add_argument(
        "--keep-checkpoints", action="store_true", help="keep each trial's last.pt and best.pt"
    )
    return p


def tune_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # One line per epoch from tune's reporter; the trainer's, loader's and evaluator's own
    # lines would repeat it.
    logging.getLogger("prodet").setLevel(logging.WARNING)
    logging.getLogger("prodet.detection.tune").setLevel(logging.INFO)
    try:
        from prodet.configs import tune_space_path
        from prodet.detection.tune import TuneSettings, run_tune
        from prodet.detection.tune_space import load_space
    except ModuleNotFoundError as exc:
        print(
            f"prodet tune: {exc.name} is missing; install the tune extra: pip install 'prodet[tune]'",
            file=sys.stderr,
        )
        return 2
    warnings.filterwarnings("ignore", message=".*is experimental.*")
    try:
        overrides = parse_overrides(args.set)
        if args.data:
            overrides["data"] = args.data
        space_file = args.space or tune_space_path(args.head)
        settings = TuneSettings(
            out=args.out,
            head=args.head,
            trials=args.trials,
            trial_minutes=args.trial_minutes,
            space=load_space(space_file),
            base_config=args.config,
            base_overrides=overrides,
            storage=args.storage,
            study=args.study,
            epochs=args.epochs,
            tail=args.tail,
            repeats=args.repeats,
            heartbeat_s=args.heartbeat,
            keep_checkpoints=args.keep_checkpoints,
        )
        result = run_tune(settings)
    except (ValueError, FileNotFoundError) as exc:
        print(f"prodet tune: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"prodet tune: interrupted; the trial in flight is marked failed, the reports in "
            f"{args.out} are up to date, and the same command continues the study",
            file=sys.stderr,
        )
        return 130
    study = result.study
    states = [t.state.name for t in study.trials]
    counts = ", ".join(
        f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
    )
    print(f"study {study.study_name!r} in {result.storage_url}: {len(states)} trials ({counts})")
    if any(p.name == "best.yaml" for p in result.written):
        best = study.best_trial
        print(
            f"best trial {best.number}: value {best.value:.4f} "
            f"(mean val VOC mAP@0.5 of its last {args.tail} epochs)"
        )
        for key, value in best.params.items():
            print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    print("wrote " + ", ".join(str(p) for p in result.written))
    if any(p.name == "best.yaml" for p in result.written):
        print(f"train it: prodet train --config {args.out / 'best.yaml'} --max-minutes 15")
    return 0
