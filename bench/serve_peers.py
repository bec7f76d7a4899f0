"""The peers ``bench/serve_load.py`` compares ``prodet serve`` with, in the same run.

- The naive server (``bench/naive_server.py``) in its own uvicorn process.
- Raw onnxruntime with no HTTP, measured two ways on the same session settings as the
  service (``serve.model_runner.ModelRunner``):
  ``model only``: ``session.run`` on tensors prepared once (the ceiling of any server);
  ``in-process pipeline``: decode, pre-process, run and map boxes back for every image, in
  one Python process without HTTP (``prodet predict``'s path), one image after another;
  ``in-process pipelined``: the same work with the next batch decoded by a thread pool
  (one thread per core) while the current one runs, the best a program without HTTP
  does with the same cores.
- Peak resident memory of a process, from Linux's ``/proc/PID/status`` (``VmHWM``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from prodet.datasets.geometry import boxes_to_original
from prodet.live_server import clean_environment, free_port
from prodet.serve.model_runner import ModelRunner
from prodet.serve.preprocess import prepare_image
from prodet.serve.settings import DEFAULT_MAX_PIXELS

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mib(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of process ``pid`` in MiB; NaN where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used; NaN where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class PeerProcess:
    """A server process under test: base URL and pid."""

    url: str
    pid: int


@contextmanager
def naive_server(checkpoint: Path, log: Path) -> Iterator[PeerProcess]:
    """Start ``uvicorn bench.naive_server:app`` on a free port for ``checkpoint``."""
    port = free_port()
    env = clean_environment(PRODET_NAIVE_CHECKPOINT=str(checkpoint))
    cmd = [sys.executable, "-m", "uvicorn", "bench.naive_server:app", "--port", str(port)]
    cmd += ["--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"naive server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"naive server not ready after 120 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield PeerProcess(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class RawResult:
    """Raw onnxruntime throughput: what was timed, at which batch, images/s."""

    label: str
    batch: int
    images: int
    wall_s: float

    @property
    def images_per_s(self) -> float:
        """Images per second of wall time."""
        return self.images / self.wall_s


def combined_raw(rounds: Sequence[Sequence[RawResult]]) -> list[RawResult]:
    """Rounds of ``raw_onnxruntime`` results as one list: images and walls added per
    ``(label, batch)``, in the first round's order."""
    totals: dict[tuple[str, int], RawResult] = {}
    for results in rounds:
        for r in results:
            seen = totals.get((r.label, r.batch))
            if seen is not None:
                r = RawResult(r.label, r.batch, seen.images + r.images, seen.wall_s + r.wall_s)
            totals[(r.label, r.batch)] = r
    return list(totals.values())


def _timed(label: str, batch: int, seconds: float, step) -> RawResult:
    step()  # warm-up
    images = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        images += step()
    return RawResult(label, batch, images, time.perf_counter() - started)


def raw_onnxruntime(
    model: Path,
    images: bytes | Sequence[bytes],
    batches: list[int],
    seconds: float,
    *,
    provider: str = "auto",
) -> list[RawResult]:
    """Time ``model`` with onnxruntime alone, per batch size, ``seconds`` each.

    ``model only`` runs the session on a batch prepared once; ``in-process pipeline``
    also decodes, pre-processes and maps the boxes of every image, sequentially;
    ``in-process pipelined`` overlaps the decoding of the next batch with the run. Several
    ``images`` are taken in turn; decoding is the service's default (fast JPEG decoding).
    """
    runner = ModelRunner.load(model, provider=provider, warmup_batch=max(batches))
    metadata = runner.metadata
    turn = _Turns([images] if isinstance(images, bytes) else list(images))
    prepared = prepare_image(turn.next(), metadata, max_pixels=DEFAULT_MAX_PIXELS)
    results = []
    for batch in batches:
        tensors = np.stack([prepared.tensor] * batch)

        def model_only(tensors: np.ndarray = tensors, batch: int = batch) -> int:
            runner.run(tensors)
            return batch

        def pipeline(batch: int = batch) -> int:
            items = [
                prepare_image(turn.next(), metadata, max_pixels=DEFAULT_MAX_PIXELS)
                for _ in range(batch)
            ]
            outputs = runner.run(np.stack([p.tensor for p in items]))
            for item, raw in zip(items, outputs, strict=True):
                boxes_to_original(raw.boxes, item.geometry)
            return batch

        results.append(_timed("raw onnxruntime, model only", batch, seconds, model_only))
        results.append(_timed("raw onnxruntime, in-process pipeline", batch, seconds, pipeline))
        with _Pipelined(runner, turn, batch) as pipelined:
            results.append(
                _timed("raw onnxruntime, in-process pipelined", batch, seconds, pipelined.step)
            )
    return results


class _Turns:
    """The workload's images, one after another, round and round."""

    def __init__(self, images: list[bytes]) -> None:
        if not images:
            raise ValueError("need at least one image")
        self.images = images
        self.index = 0

    def next(self) -> bytes:
        image = self.images[self.index % len(self.images)]
        self.index += 1
        return image


class _Pipelined:
    """Decode and pre-process batch ``n + 1`` in threads while batch ``n`` runs.

    Pillow and onnxruntime release the GIL, so with one decoding thread per core the
    decode, the resize and ``session.run`` overlap; boxes are mapped back as in the
    service.
    """

    def __init__(self, runner: ModelRunner, images: _Turns, batch: int) -> None:
        self.runner = runner
        self.images = images
        self.batch = batch
        self.pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self.pending: list[Future] = []

    def __enter__(self) -> _Pipelined:
        self.pending = self._submit()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)

    def _submit(self) -> list[Future]:
        metadata = self.runner.metadata
        return [
            self.pool.submit(
                prepare_image, self.images.next(), metadata, max_pixels=DEFAULT_MAX_PIXELS
            )
            for _ in range(self.batch)
        ]

    def step(self) -> int:
        images = [future.result() for future in self.pending]
        self.pending = self._submit()
        outputs = self.runner.run(np.stack([p.tensor for p in images]))
        for item, raw in zip(images, outputs, strict=True):
            boxes_to_original(raw.boxes, item.geometry)
        return self.batch
