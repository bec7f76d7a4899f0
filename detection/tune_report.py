"""What ``prodet tune`` writes: ``trials.csv``, ``best.yaml`` and the study's plots.

Every file is written atomically (``annotations.atomic``), after each process's trials
and when a run is interrupted, so a reader never sees half a report.
"""

from __future__ import annotations

import csv
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml  # no types-PyYAML stubs in the environment
from optuna.trial import FrozenTrial, TrialState

from prodet.annotations.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)


def write_reports(study: optuna.Study, out: Path, tail: int) -> list[Path]:
    """``best.yaml`` (when a trial completed), ``trials.csv`` and the plots, atomically."""
    trials = study.get_trials(deepcopy=False)
    written = [out / "trials.csv"]
    atomic_write_bytes(written[0], trials_csv(trials).encode("utf-8"))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        written.append(out / "best.yaml")
        atomic_write_bytes(written[-1], best_yaml(best, study, out, tail).encode("utf-8"))
    written += _plots(study, out, len(complete))
    return written


def trials_csv(trials: list[FrozenTrial]) -> str:
    """One row per trial: number, state, value, the parameters, duration, worker, epochs."""
    params: list[str] = []
    for t in trials:
        params += [k for k in t.params if k not in params]
    columns = ["number", "state", "value", *params, "epochs", "duration_s", "worker", "started"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for t in sorted(trials, key=lambda t: t.number):
        duration = t.duration.total_seconds() if t.duration is not None else None
        writer.writerow(
            {
                "number": t.number,
                "state": t.state.name,
                "value": f"{t.value:.6g}" if t.value is not None else "",
                **{k: _fmt(v) for k, v in t.params.items()},
                "epochs": t.user_attrs.get("epochs", ""),
                "duration_s": f"{duration:.1f}" if duration is not None else "",
                "worker": t.user_attrs.get("worker", ""),
                "started": t.datetime_start.isoformat(timespec="seconds")
                if t.datetime_start
                else "",
            }
        )
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def best_yaml(best: FrozenTrial, study: optuna.Study, out: Path, tail: int) -> str:
    """The best trial's whole config, for ``prodet train --config``; ``out`` points at a
    fresh folder, the time budget stays the trial's (override it with --max-minutes)."""
    tree = yaml.safe_load(best.user_attrs["config"])
    tree["out"] = str(out / "best-run")
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    header = (
        f"# prodet tune, study {study.study_name!r}: trial {best.number}, the best of "
        f"{finished} finished trials\n# value {best.value:.4f} (mean validation VOC area "
        f"mAP@0.5 of its last {tail} epochs); parameters: "
        + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        + "\n"
    )
    return header + yaml.safe_dump(tree, sort_keys=False)


def _plots(study: optuna.Study, out: Path, complete: int) -> list[Path]:
    """history.png and intermediate.png once a trial completed, importances.png from two
    on; a plot Optuna cannot draw is skipped with a log line."""
    from optuna.visualization import matplotlib as optuna_plt

    # file -> (plot, completed trials it needs)
    plots: dict[str, tuple[Callable[[optuna.Study], Any], int]] = {
        "history.png": (optuna_plt.plot_optimization_history, 1),
        "importances.png": (optuna_plt.plot_param_importances, 2),
        "intermediate.png": (optuna_plt.plot_intermediate_values, 1),
    }
    written = []
    for name, (plot, needs) in plots.items():
        if complete < needs:
            continue
        try:
            with warnings.catch_warnings():
                # experimental-API notices; PED-ANOVA's "importances will be equal" on few trials
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            logger.info("skipped %s: %s", name, exc)
            continue
        figure: Any = axes.figure
        figure.set_size_inches(8, 5)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        _close(figure)
        atomic_write_bytes(out / name, buffer.getvalue())
        written.append(out / name)
    return written


def _close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
