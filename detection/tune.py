"""``prodet tune``: a hyperparameter search over TrainConfig keys, on Optuna.

Each trial trains one configuration (a ``--config`` base, the search space's values on
top) with ``fit`` for a fixed time budget and is scored on validation mAP:

- **Value**: the mean validation VOC area mAP@0.5 of the trial's last ``tail`` epochs
  (3 by default). The cosine schedule is fitted to the budget, so those are the annealed
  epochs; their mean is steadier than one epoch's figure on a small validation split.
  Every trial keeps the base seed, so all of them see the same validation images and the
  same data order; ``repeats`` > 1 trains a trial again with seeds ``seed+1, ...``, each
  carving its own validation images (Monte-Carlo cross-validation), and averages.
- **Pruning**: TPE samples, and a median pruner stops a trial whose running value is
  below the median of earlier trials' at the same point. That point is the fraction of
  the time budget spent (tenths), not the epoch: trials of different image sizes or batch
  sizes run different numbers of epochs in the same budget, and the fitted schedule makes
  epoch k of a short-epoch trial an early, high-learning-rate one. ``fit`` knows nothing
  of Optuna: it takes an ``on_epoch`` callback (``_PruningReporter``).
- **Storage**: an Optuna RDB storage (SQLite file, PostgreSQL or MySQL URL), so reruns
  continue the study and several processes share it. Trials send heartbeats; a trial whose
  process died is marked failed by the next process that starts a trial after the grace
  period, and re-queued once with the same parameters.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from prodet.annotations.pickle_store import load_dataset
from prodet.annotations.schema import VocDataset
from prodet.detection.config import (
    TrainConfig,
    config_to_yaml,
    load_config,
)
from prodet.detection.trainer import fit, resolve_splits
from prodet.detection.tune_report import write_reports
from prodet.detection.tune_space import Param

logger = logging.getLogger(__name__)

PRUNED = "pruned"  # the stop reason the reporter hands back to fit
STEPS = 10  # pruning checkpoints: tenths of a trial's time budget


@dataclass(frozen=True)
class TuneSettings:
    """What ``prodet tune`` was asked: the base config, the space, the study, the budget."""

    out: Path
    head: str
    trials: int
    trial_minutes: float
    space: list[Param]
    base_config: Path | None = None
    base_overrides: Mapping[str, Any] = field(default_factory=dict)
    storage: str | None = None
    study: str | None = None
    epochs: int = 1000
    tail: int = 3
    repeats: int = 1
    heartbeat_s: int = 30
    keep_checkpoints: bool = False

    def config(self, params: Mapping[str, Any], *, out: Path, seed_offset: int = 0) -> TrainConfig:
        """The TrainConfig of one training run: base < the space's values < the budget."""
        base = load_config(self.base_config, {**self.base_overrides, "head": self.head})
        values = {
            **self.base_overrides,
            "head": self.head,
            **params,
            "out": str(out),
            "max_minutes": self.trial_minutes,
            "epochs": self.epochs,
            "seed": base.seed + seed_offset,
        }
        return load_config(self.base_config, values)


def tail_mean(maps: list[float], tail: int) -> float:
    """Mean of the last ``tail`` values (all of them when fewer); 0.0 for none."""
    return statistics.fmean(maps[-tail:]) if maps else 0.0


class _PruningReporter:
    """``fit``'s ``on_epoch``: report the running value at each tenth of the budget."""

    def __init__(self, trial: optuna.Trial, budget_s: float, max_epochs: int, tail: int) -> None:
        self.trial = trial
        self.budget_s = budget_s
        self.max_epochs = max_epochs
        self.tail = tail
        self.maps: list[float] = []
        self.reported = 0

    def __call__(self, row: dict[str, Any]) -> str | None:
        if "val_map_area" not in row:
            return None
        self.maps.append(float(row["val_map_area"]))
        value = tail_mean(self.maps, self.tail)
        spent = max(float(row["elapsed_s"]) / self.budget_s, int(row["epoch"]) / self.max_epochs)
        step = min(STEPS, math.floor(spent * STEPS + 1e-9))
        for reached in range(self.reported + 1, step + 1):
            self.trial.report(value, reached)
        self.reported = max(self.reported, step)
        logger.info(
            "trial %d epoch %d (%d%% of the budget): val mAP@0.5 %.4f, value %.4f",
            self.trial.number,
            row["epoch"],
            min(100, round(100 * spent)),
            self.maps[-1],
            value,
        )
        if self.reported and self.trial.should_prune():
            return PRUNED
        return None


def storage_url(url: str, *, hide_password: bool = False) -> str:
    """``url`` as an SQLAlchemy URL: a plain file path becomes ``sqlite:///ABSOLUTE``."""
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    if hide_password:
        try:
            return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        except (sqlalchemy.exc.ArgumentError, ValueError):
            return url
    return url


def open_storage(url: str, *, heartbeat_s: int = 30) -> RDBStorage:
    """The study's storage: an SQLAlchemy URL (``sqlite:///tune.db``,
    ``postgresql://user:password@host:5432/db``, ``mysql+pymysql://...``) or a file path
    (SQLite). Raises ValueError saying what was tried when it cannot be opened."""
    url = storage_url(url)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise ValueError(
            f"--storage {url!r}: not a database URL ({exc}); e.g. sqlite:///tune.db, "
            "postgresql://USER:PASSWORD@HOST:5432/DB or mysql+pymysql://USER:PASSWORD@HOST/DB"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ":memory:"
        tried = (
            f"the SQLite file {Path(database).resolve() if database != ':memory:' else database}"
        )
        # Writers from several processes wait for the file lock instead of failing.
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        tried = (
            f"SQLAlchemy dialect {parsed.drivername} to host {parsed.host or 'localhost'}, "
            f"port {parsed.port or 'default'}, database {parsed.database or '-'}, "
            f"user {parsed.username or '-'}"
        )
        engine_kwargs = {"pool_pre_ping": True}
    try:
        return _rdb_storage(url, engine_kwargs, heartbeat_s)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError, RuntimeError) as exc:
        # the driver's own error (SQLAlchemy's .orig), or the import that failed
        cause = getattr(exc, "orig", None) or exc.__cause__ or exc
        reason = str(cause).strip().splitlines()[0]
        raise ValueError(
            f"--storage {shown}: cannot open the study storage; tried {tried}: {reason}"
        ) from None


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], heartbeat_s: int) -> RDBStorage:
    """Optuna's RDB storage with heartbeats; processes that start on a new database at the
    same moment race to create its tables, and the losers retry once those exist."""
    attempt = 0
    while True:
        attempt += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_s,
                    grace_period=2 * heartbeat_s,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.DatabaseError) as exc:
            race = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if not race or attempt == 5:
                raise
            logger.info("storage: another process is creating the tables; retrying")
            time.sleep(0.5 * attempt)


def check_settings(settings: TuneSettings) -> tuple[TrainConfig, VocDataset]:
    """Refuse, before any trial runs, a space whose values make no valid config and a
    dataset without validation images. Returns the base config of trial 0's shape and the
    loaded dataset, which every trial of this process trains on (read once)."""
    if settings.tail < 1 or settings.repeats < 1 or settings.trials < 1:
        raise ValueError("--tail, --repeats and --trials must be at least 1")
    if settings.trial_minutes <= 0:
        raise ValueError(f"--trial-minutes {settings.trial_minutes}: must be positive")
    probe = Path(settings.out) / "probe"
    for param in settings.space:
        for value in param.corners():
            try:
                settings.config({param.key: value}, out=probe)
            except ValueError as exc:
                raise ValueError(
                    f"--space: {param.key}={value!r} is not a valid value: {exc}"
                ) from None
    config = settings.config({}, out=probe)
    if not config.data:
        raise ValueError("--data is required: the dataset .pkl written by `prodet convert`")
    if not Path(config.data).is_file():
        raise ValueError(f"--data {config.data}: no such file")
    voc = load_dataset(config.data)
    _, val_ids = resolve_splits(voc, config)
    if not val_ids:
        raise ValueError(
            f"tune ranks trials on validation mAP, but val_split={config.val_split!r} leaves "
            "no validation images: use a dataset split or val_split val (carved from training)"
        )
    return config, voc


@dataclass(frozen=True)
class TuneResult:
    """The study after this process's trials, its storage and the report files written."""

    study: optuna.Study
    storage_url: str  # password hidden
    written: list[Path]


def run_tune(settings: TuneSettings) -> TuneResult:
    """Check the settings, run ``settings.trials`` trials of the study (created or
    continued), then write ``best.yaml``, ``trials.csv`` and the plots into ``settings.out``."""
    base, voc = check_settings(settings)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    url = settings.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    storage = open_storage(url, heartbeat_s=settings.heartbeat_s)
    name = settings.study or f"{Path(base.data).stem}-{settings.head}"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
    )
    trial_root = out / "trials" / name
    try:
        study.optimize(
            _objective(settings, trial_root, storage, voc),
            n_trials=settings.trials,
            gc_after_trial=True,
            catch=(ValueError, RuntimeError),  # a configuration that fails is one failed trial
        )
    except KeyboardInterrupt:  # Optuna has marked the trial in flight failed
        write_reports(study, out, settings.tail)
        raise
    shown = storage_url(url, hide_password=True)
    return TuneResult(study, shown, write_reports(study, out, settings.tail))


def _objective(
    settings: TuneSettings, trial_root: Path, storage: RDBStorage, voc: VocDataset
) -> Callable[[optuna.Trial], float]:
    """Each trial trains on ``voc``, the dataset loaded once for the whole process."""
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        # Beat once before any work: Optuna's heartbeat thread may not have written yet
        # when a process dies early in a trial, and a trial without a heartbeat is never
        # found stale, so it would stay RUNNING instead of failing and being retried.
        study_id = storage.get_study_id_from_name(trial.study.study_name)
        storage.record_heartbeat(
            storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        )
        params = {p.key: p.suggest(trial) for p in settings.space}
        run_dir = trial_root / f"{trial.number:04d}"
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        values = []
        for repeat in range(settings.repeats):
            out = run_dir if repeat == 0 else run_dir.with_name(f"{run_dir.name}-r{repeat}")
            config = settings.config(params, out=out, seed_offset=repeat)
            if repeat == 0:
                trial.set_user_attr("config", config_to_yaml(config))
            reporter = (
                _PruningReporter(trial, settings.trial_minutes * 60, config.epochs, settings.tail)
                if repeat == 0
                else None
            )
            try:
                result = fit(config, progress=False, on_epoch=reporter, voc=voc)
            finally:
                if not settings.keep_checkpoints:
                    for checkpoint in out.glob("*.pt"):
                        checkpoint.unlink()
            maps = [float(r["val_map_area"]) for r in result.history if "val_map_area" in r]
            if repeat == 0:
                trial.set_user_attr("epochs", result.epochs_done)
            if result.stopped_because == PRUNED:
                raise optuna.TrialPruned(f"below the median at epoch {result.epochs_done}")
            values.append(tail_mean(maps, settings.tail))
        return statistics.fmean(values)

    return objective
