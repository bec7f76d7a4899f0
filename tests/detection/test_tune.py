"""``prodet tune``: the search space, the pruning hook, the storage, and studies shared by
processes on one SQLite file and on a real PostgreSQL server; a killed process loses only
its trial in flight."""

from __future__ import annotations

import csv
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from prodet.commands import main as prodet
from prodet.configs import tune_space_path
from prodet.detection.config import load_config
from prodet.detection.trainer import fit
from prodet.detection.tune import _PruningReporter, open_storage, tail_mean
from prodet.detection.tune_space import Param, load_space
from tests.detection.test_trainer import make_tiny_dataset, tiny_overrides

REPO = Path(__file__).resolve().parents[2]
# Tiny trials: 64 px, no pretrained weights, 3 validation images, at most 2 epochs.
TINY_FLAGS = [
    "--set", "backbone_weights=none", "--set", "size=64", "--set", "workers=0",
    "--set", "val_fraction=0.25", "--set", "warmup_epochs=0.5",
]  # fmt: skip
SPACE = "lr: {low: 0.002, high: 0.05, log: true}\nbatch_size: [2, 4]\nema: true\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tune") / "voc")


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def tune_argv(data: Path, out: Path, space: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--head", "ssd", "--trial-minutes", "0.05", "--epochs", "2",
        "--out", str(out), "--space", str(space), *TINY_FLAGS, *extra,
    ]  # fmt: skip


def start_tune(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "prodet", "tune", *argv], cwd=REPO, env=env, stdout=fh, stderr=fh
        )


def wait_ok(procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float = 120) -> None:
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=timeout) == 0, log.read_text()[-3000:]


def load_study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


# --- the search space ------------------------------------------------------------------


def test_space_file_kinds(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "lr: {low: 0.001, high: 0.1, log: true}\nfreeze: {low: 0, high: 3}\n"
        "ssd.fpn_channels: [0, 96]\nema: true\nmax_minutes: {low: 1, high: 2}\n"
    )
    params = {p.key: p for p in load_space(path)}
    assert params["lr"] == Param("lr", "float", low=0.001, high=0.1, log=True)
    assert params["freeze"].kind == "int" and (params["freeze"].low, params["freeze"].high) == (
        0,
        3,
    )
    assert params["ssd.fpn_channels"].choices == (0, 96)
    assert params["ema"] == Param("ema", "fixed", value=True)
    assert params["max_minutes"].kind == "float"  # float | None ranges as a float


@pytest.mark.parametrize("head", ["ssd", "fast_rcnn"])
def test_default_spaces_make_valid_configs(head):
    params = load_space(tune_space_path(head))
    assert {"lr", "size", "preset", "ema_decay", "freeze", "batch_size"} <= {p.key for p in params}
    for param in params:
        for value in param.corners():
            config = load_config(None, {"head": head, param.key: value})
            assert config.head == head


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "lr: {low: 0.001, high: 0.1}\nema_decey: [0.99]\n",
            "'ema_decey' (did you mean 'ema_decay'?)",
        ),
        ("ssd.fpn_chanels: [0, 96]\n", "'ssd.fpn_chanels' (did you mean 'ssd.fpn_channels'?)"),
        ("lr: {low: 0.1, high: 0.01}\n", "lr: empty range, low=0.1 is not below high=0.01"),
        ("lr: {low: 0.1, high: 0.1}\n", "lr: empty range"),
        ("size: []\n", "size: an empty list of choices"),
        ("preset: {low: 1, high: 2}\n", "preset: is not numeric"),
        ("lr: {low: 0, high: 0.1, log: true}\n", "log: true needs low > 0"),
        ("freeze: {low: 0, high: 2.5}\n", "an integer key needs integer low and high"),
        ("lr: {low: 0.01, hi: 0.1}\n", r"unknown: hi"),
        ("[1, 2]\n", "expected a mapping"),
    ],
)
def test_bad_space_names_the_key(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")
    ):
        load_space(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "lr: [0.01]\nema_decey: [0.99]\n",
            "unknown config key 'ema_decey' (did you mean 'ema_decay'?)",
        ),
        ("lr: {low: 0.05, high: 0.001}\n", "lr: empty range, low=0.05 is not below high=0.001"),
        ("head: [ssd, yolo]\n", "head='yolo' is not a valid value"),
    ],
)
def test_bad_space_is_refused_before_any_trial(tiny, tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    assert prodet(["tune", *tune_argv(tiny, out, path, "--trials", "1")]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "study.db").exists() and not (out / "trials").exists()


def test_no_validation_images_is_refused(tiny, tmp_path, space, capsys):
    argv = tune_argv(tiny, tmp_path / "out", space, "--trials", "1", "--set", "val_split=none")
    assert prodet(["tune", *argv]) == 2
    assert "no validation images" in capsys.readouterr().err


# --- the storage -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("nosuchdb://host/db", "tried SQLAlchemy dialect nosuchdb to host host"),
        ("sqlite:////no/such/folder/tune.db", "tried the SQLite file /no/such/folder/tune.db"),
        (
            "postgresql://tuner:secret@127.0.0.1:{port}/optuna",
            "tried SQLAlchemy dialect postgresql to host 127.0.0.1, port {port}, database optuna, user tuner: ",
        ),
        ("postgresql://:::", "not a database URL"),
    ],
)
def test_storage_that_cannot_be_opened_says_what_was_tried(url, said):
    port = free_port()  # nothing listens there
    with pytest.raises(ValueError) as caught:
        open_storage(url.format(port=port))
    message = str(caught.value)
    assert "cannot open the study storage" in message or "not a database URL" in message
    assert said.format(port=port) in message
    assert "secret" not in message


def test_bad_storage_through_the_command(tiny, tmp_path, space, capsys):
    argv = tune_argv(tiny, tmp_path / "out", space, "--storage", "sqlite:////no/such/folder/x.db")
    assert prodet(["tune", *argv]) == 2
    assert "--storage sqlite:////no/such/folder/x.db: cannot open" in capsys.readouterr().err


# --- the pruning hook ----------------------------------------------------------------------


class FakeTrial:
    number = 7

    def __init__(self, prune_at: int | None = None) -> None:
        self.reports: list[tuple[int, float]] = []
        self.prune_at = prune_at

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune_at is not None and self.reports[-1][0] >= self.prune_at


def test_reporter_reports_the_tail_mean_at_tenths_of_the_budget():
    trial = FakeTrial()
    reporter = _PruningReporter(trial, budget_s=100.0, max_epochs=1000, tail=2)  # type: ignore[arg-type]
    assert reporter({"epoch": 1, "elapsed_s": 15.0, "val_map_area": 0.2}) is None
    assert reporter({"epoch": 2, "elapsed_s": 19.0}) is None  # no validation: nothing to report
    assert reporter({"epoch": 3, "elapsed_s": 42.0, "val_map_area": 0.4}) is None
    # 15 s: step 1 at 0.2; 42 s crosses steps 2, 3 and 4 with the mean of 0.2 and 0.4
    assert trial.reports == [
        (1, 0.2),
        (2, pytest.approx(0.3)),
        (3, pytest.approx(0.3)),
        (4, pytest.approx(0.3)),
    ]
    # an epoch cap counts as the budget too: epoch 1000 of 1000 is step 10
    reporter({"epoch": 1000, "elapsed_s": 50.0, "val_map_area": 0.6})
    assert trial.reports[-1] == (10, pytest.approx(0.5)) and len(trial.reports) == 10


def test_reporter_stops_the_run_when_the_trial_should_be_pruned():
    reporter = _PruningReporter(FakeTrial(prune_at=2), budget_s=10.0, max_epochs=100, tail=3)  # type: ignore[arg-type]
    assert reporter({"epoch": 1, "elapsed_s": 1.0, "val_map_area": 0.1}) is None
    assert reporter({"epoch": 2, "elapsed_s": 2.0, "val_map_area": 0.1}) == "pruned"


def test_tail_mean():
    assert tail_mean([0.1, 0.2, 0.3, 0.7], 3) == pytest.approx(0.4)
    assert tail_mean([0.5], 3) == 0.5 and tail_mean([], 3) == 0.0


def test_fit_stops_when_the_epoch_callback_says_so(tiny, tmp_path):
    seen: list[dict] = []

    def stop_after_two(row: dict) -> str | None:
        seen.append(row)
        return "pruned" if row["epoch"] == 2 else None

    config = load_config(None, tiny_overrides(tiny, tmp_path / "run", epochs=4))
    result = fit(config, progress=False, on_epoch=stop_after_two)
    assert (result.epochs_done, result.stopped_because) == (2, "pruned")
    assert [row["epoch"] for row in seen] == [1, 2]
    assert all("val_map_area" in row and row["elapsed_s"] > 0 for row in seen)
    assert (tmp_path / "run" / "last.pt").is_file()  # the stopping epoch is checkpointed


def test_repeats_average_the_tail_means_of_runs_with_successive_seeds(tiny, tmp_path, space):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    argv = tune_argv(tiny, tmp_path / "out", space, "--storage", url, "--study", "r")
    assert prodet(["tune", *argv, "--trials", "1", "--repeats", "2", "--tail", "2"]) == 0
    runs = [tmp_path / "out" / "trials" / "r" / name for name in ("0000", "0000-r1")]
    seeds = [load_config(run / "config.yaml").seed for run in runs]
    assert seeds == [0, 1]
    tails = []
    for run in runs:
        maps = [float(r["val_map_area"]) for r in csv.DictReader((run / "metrics.csv").open())]
        tails.append(sum(maps[-2:]) / len(maps[-2:]))
    assert load_study(url, "r").trials[0].value == pytest.approx(sum(tails) / 2, abs=1e-6)
    assert not list(runs[0].glob("*.pt"))  # checkpoints of finished trials are removed


# --- studies shared by processes ------------------------------------------------------------


def check_shared_study(url: str, study_name: str, out: Path, procs: int, per_proc: int) -> None:
    study = load_study(url, study_name)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(procs * per_proc))
    assert len({t.user_attrs["worker"] for t in trials}) == procs
    assert all(
        t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        for t in trials
    )
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == list(range(procs * per_proc))
    best = load_config(out / "best.yaml")
    assert best.head == "ssd" and best.lr == pytest.approx(study.best_trial.params["lr"])
    assert best.batch_size == study.best_trial.params["batch_size"] and best.ema
    for plot in ("history.png", "importances.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_processes_share_one_sqlite_study_and_a_rerun_continues_it(tiny, tmp_path, space):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    out = tmp_path / "out"
    argv = tune_argv(tiny, out, space, "--storage", url, "--study", "s", "--trials", "2")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_tune(argv, log) for log in logs]
    wait_ok(procs, logs)
    check_shared_study(url, "s", out, procs=2, per_proc=2)
    # rerunning continues the study: trial numbers go on from 4
    assert (
        prodet(
            [
                "tune",
                *tune_argv(tiny, out, space, "--storage", url, "--study", "s", "--trials", "1"),
            ]
        )
        == 0
    )
    assert [t.number for t in load_study(url, "s").trials] == [0, 1, 2, 3, 4]


def test_killed_tune_loses_at_most_the_trial_in_flight(tiny, tmp_path, space):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    out = tmp_path / "out"
    # trials of 3 s (no epoch cap), heartbeats every second: stale after 2 s
    argv = [
        *tune_argv(tiny, out, space, "--storage", url, "--study", "k", "--heartbeat", "1"),
        "--epochs",
        "1000",
        "--trials",
        "3",
    ]
    log = tmp_path / "killed.log"
    proc = start_tune(argv, log)
    deadline = time.monotonic() + 90
    while not (out / "trials" / "k" / "0001").exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(4.0)  # past the 2 s grace period (SQLite's clock has 1 s steps)
    rerun = [*argv[:-1], "1"]
    assert prodet(["tune", *rerun]) == 0
    trials = load_study(url, "k").trials
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]  # trial 0 kept, 1 lost, retried as 2
    assert trials[2].params == trials[1].params
    assert trials[2].system_attrs["failed_trial"] == 1


def nonroot_command() -> list[str]:
    """The prefix that runs a PostgreSQL binary as a user it accepts (it refuses root)."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("PostgreSQL refuses to run as root, and there is no user 'nobody'")
    if runuser is None:
        pytest.skip("PostgreSQL refuses to run as root, and there is no runuser to drop to nobody")
    return [runuser, "-u", "nobody", "--"]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free port; yields its URL."""
    binaries = {
        name: shutil.which(name) or f"/usr/local/bin/{name}" for name in ("initdb", "pg_ctl")
    }
    missing = [name for name, path in binaries.items() if not Path(path).is_file()]
    if missing:
        pytest.skip(f"PostgreSQL server binaries not found: {', '.join(missing)}")
    as_user = nonroot_command()
    root = Path(tempfile.mkdtemp(prefix="prodet-pg-"))
    if as_user:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    data, port = root / "data", free_port()
    try:
        subprocess.run(
            [*as_user, binaries["initdb"], "-D", str(data), "-U", "postgres", "--auth=trust", "-N"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*as_user, binaries["pg_ctl"], "-D", str(data), "-l", str(root / "server.log"), "-w",
             "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_user, binaries["pg_ctl"], "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def test_two_processes_share_one_postgresql_study(tiny, tmp_path, space, postgres):
    out = tmp_path / "out"
    argv = tune_argv(tiny, out, space, "--storage", postgres, "--study", "pg", "--trials", "1")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_tune(argv, log) for log in logs]
    wait_ok(procs, logs)
    check_shared_study(postgres, "pg", out, procs=2, per_proc=1)
