"""Accuracy at a fixed CPU budget: train for N minutes, evaluate on the test split.

For each dataset under ../shared/data and each head: ``prodet convert``, then
``prodet train --config RECIPE --max-minutes N`` (the cosine schedule anneals inside the
budget), then ``prodet evaluate --split test`` on the best checkpoint. The recipe of a
dataset and head is ``configs/DATASET-HEAD.yaml`` (``commodity_voc`` and ``fast_rcnn``:
``configs/commodity-fast-rcnn.yaml``) unless ``--config DATASET[:HEAD]=FILE`` names one. Records VOC area mAP@0.5, VOC07
11-point mAP, COCO mAP@[.5:.95], training images/s and inference ms/image, next to the
torchvision Faster R-CNN FPN reference measured the same way on this machine (from the
issue: 0.167 on groceries25, 0.493 on commodity after 15 minutes).

    python bench/train_budget.py --datasets groceries25_voc commodity_voc --heads ssd \
        --minutes 15 --write BENCHMARKS.md
    python bench/train_budget.py --datasets commodity_voc --heads ssd --minutes 15 \
        --config commodity_voc=configs/commodity-ssd-fpn.yaml --set seed=1
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_report import machine_description, write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SECTION = "## Accuracy at a fixed CPU budget"
REFERENCE = {  # torchvision Faster R-CNN + FPN + RoIAlign, EfficientNet-Lite0, 320 px, 15 min
    "groceries25_voc": (0.167, 72.0),
    "commodity_voc": (0.493, 114.0),
}
HEADS = ("ssd", "fast_rcnn")


def default_recipe(dataset: str, head: str) -> Path:
    """``configs/commodity-fast-rcnn.yaml`` for ``commodity_voc`` and ``fast_rcnn``."""
    name = f"{dataset.removesuffix('_voc')}-{head.replace('_', '-')}"
    return REPO / "configs" / f"{name}.yaml"


def recipes_from_args(items: list[str]) -> dict[tuple[str, str | None], Path]:
    """``["commodity_voc:ssd=configs/x.yaml", "groceries25_voc=y.yaml"]`` to
    ``{(dataset, head or None): path}``; a path is relative to the repository."""
    out: dict[tuple[str, str | None], Path] = {}
    for item in items:
        target, sep, file = item.partition("=")
        dataset, _, head = target.partition(":")
        if not sep or not dataset or not file or (head and head not in HEADS):
            raise ValueError(f"--config {item!r}: expected DATASET[:HEAD]=FILE, HEAD in {HEADS}")
        path = REPO / file
        if not path.is_file():
            raise ValueError(f"--config {item!r}: no file {path}")
        out[(dataset, head or None)] = path
    return out


def prodet(*args: str) -> str:
    """Run ``prodet`` (this interpreter's) and return its stdout; raise on failure."""
    cmd = [sys.executable, "-m", "prodet", *args]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def run_one(
    dataset: str,
    head: str,
    minutes: float,
    workdir: Path,
    recipe: Path,
    sets: list[str] | None = None,
) -> dict[str, object]:
    """Convert, train the recipe within the budget, evaluate; return the table row.

    ``sets`` (``KEY=VALUE``) override the recipe's keys, e.g. ``seed=1``.
    """
    data = workdir / f"{dataset}.pkl"
    prodet("convert", str(SHARED / dataset), "-o", str(data), "--quiet")
    run = workdir / f"{dataset}-{head}-{minutes:g}min"
    set_flags = [flag for pair in sets or [] for flag in ("--set", pair)]
    prodet(
        "train", "--config", str(recipe), "--data", str(data), "--head", head, "--out", str(run),
        "--max-minutes", str(minutes), "--quiet", *set_flags,
    )  # fmt: skip
    printed = prodet(
        "evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--split", "test"
    )
    # The headline JSON sits between the per-class table and the closing "wrote ..." line.
    headline = json.loads(printed[printed.index("\n{") + 1 : printed.rindex("}") + 1])
    summary = json.loads((run / "eval-test" / "summary.json").read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    rates = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    # Without validation (--val-split none) best.pt is the last epoch.
    validated = [r for r in rows if r.get("val_map_area")] or rows[-1:]
    best_epoch = max(validated, key=lambda r: float(r.get("val_map_area") or -1))["epoch"]
    return {
        "dataset": dataset,
        "head": head,
        "minutes": minutes,
        "epochs": len(rows),
        "best_epoch": int(best_epoch),
        "voc_map_area": summary["voc"]["map_area"],
        "voc_map_11": summary["voc"]["map_11point"],
        "coco_map": summary["coco"]["AP"],
        "train_img_s": sum(rates) / max(len(rates), 1),
        # validation's timing, or the test evaluation's when the run had no validation
        "infer_ms": float(rows[-1].get("val_ms_per_image") or headline["ms_per_image"]),
        "settings": " ".join([recipe.relative_to(REPO).as_posix(), *(sets or [])]),
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| dataset | detector | budget | recipe and settings | epochs (best) | VOC area mAP@0.5 | VOC07 11-pt | COCO mAP | train img/s | inference ms/img |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        # rows of results files written before the recipes carry their `prodet train` flags
        extra = str(r.get("settings") or r.get("flags") or "-")
        lines.append(
            f"| {r['dataset']} | {r['head']} + EfficientNet-Lite0 | {r['minutes']:g} min | "
            f"`{extra}` | {r['epochs']} ({r['best_epoch']}) | {r['voc_map_area']:.3f} | "
            f"{r['voc_map_11']:.3f} | {r['coco_map']:.3f} | {r['train_img_s']:.1f} | "
            f"{r['infer_ms']:.0f} |"
        )
    for dataset in dict.fromkeys(str(r["dataset"]) for r in rows):
        if dataset in REFERENCE:
            ref_map, ref_ms = REFERENCE[dataset]
            lines.append(
                f"| {dataset} | reference: torchvision Faster R-CNN FPN (RoIAlign) | 15 min | "
                f"320 px, batch 4, flip only | - | {ref_map:.3f} | - | - | - | {ref_ms:.0f} |"
            )
    return "\n".join(lines)


def copy_plots(rows: list[dict[str, object]], workdir: Path) -> list[tuple[str, str]]:
    """Copy each run's curves.png and test PR curves into docs/benchmarks/; return links."""
    target = REPO / "docs" / "benchmarks"
    target.mkdir(parents=True, exist_ok=True)
    links = []
    for r in rows:
        run = workdir / f"{r['dataset']}-{r['head']}-{float(r['minutes']):g}min"
        for source, kind in (
            (run / "curves.png", "curves"),
            (run / "eval-test" / "pr_curves.png", "pr"),
        ):
            if source.is_file():
                stem = f"{r['dataset']}-{r['head']}-{float(r['minutes']):g}min"
                name = f"{stem}-{kind}.png"
                shutil.copyfile(source, target / name)
                links.append((f"{stem} {kind}", f"docs/benchmarks/{name}"))
    return links


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["groceries25_voc", "commodity_voc"])
    p.add_argument("--heads", nargs="+", default=["ssd"], choices=HEADS)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--workdir", type=Path, default=REPO / "out" / "bench-train")
    p.add_argument("--write", type=Path, help="replace this script's section of BENCHMARKS.md")
    p.add_argument("--results", type=Path, help="append rows as JSON lines here")
    p.add_argument(
        "--from-results",
        type=Path,
        help="only build the table from a --results file (runs made in parallel)",
    )
    p.add_argument("--note", default="", help="a sentence on how the runs were made")
    p.add_argument(
        "--extra-run",
        action="append",
        default=[],
        metavar="DATASET:HEAD:MINUTES",
        help="one more run at another budget, e.g. groceries25_voc:ssd:8",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="DATASET[:HEAD]=FILE",
        help="the recipe of a dataset (and head), e.g. "
        "'commodity_voc:ssd=configs/commodity-ssd-fpn.yaml' (default: configs/DATASET-HEAD.yaml)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config key for every run, over the recipe's, e.g. seed=1",
    )
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        recipes = recipes_from_args(args.config)
    except ValueError as exc:
        p.error(str(exc))
    plan = [(d, h, args.minutes) for d in args.datasets for h in args.heads]
    for item in args.extra_run:
        dataset, head, minutes = item.split(":")
        plan.append((dataset, head, float(minutes)))

    def recipe_of(dataset: str, head: str) -> Path:
        path = recipes.get((dataset, head)) or recipes.get((dataset, None))
        path = path or default_recipe(dataset, head)
        if not path.is_file():
            p.error(f"no recipe for {dataset} {head}: {path} is missing; pass --config")
        return path

    for dataset, head, _ in plan:
        recipe_of(dataset, head)  # every recipe is found before the first run starts
    rows = []
    if args.from_results:
        rows = [json.loads(line) for line in args.from_results.read_text().splitlines() if line]
        plan = []
    for dataset, head, minutes in plan:
        row = run_one(dataset, head, minutes, args.workdir, recipe_of(dataset, head), args.set)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.results:
            with args.results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    plots = copy_plots(rows, args.workdir)
    body = "\n".join(
        [
            SECTION,
            "",
            table(rows),
            "",
            f"Machine: {machine_description()}. Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
            f"Command: `python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`.",
            "Train img/s is the mean over epochs of the training loop's rate (augmentation in "
            "one loader worker); inference ms/img is the model alone on the "
            "validation split in PyTorch eager at batch 8. The reference row is the figure "
            "measured on this machine kind by the issue's author.",
            args.note,
            "",
            "Plots from these runs (training loss and validation mAP per epoch; test PR curves): "
            + " ".join(f"![{name}]({path})" for name, path in plots),
        ]
    )
    print(body)
    if args.write:
        write_section(args.write, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
