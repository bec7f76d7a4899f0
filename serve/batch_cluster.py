"""``prodet predict --ray-address``: detection on Ray Data actors, each holding one session.

``RayDetector.detect`` turns one chunk of images (``serve.batch_predict``) into a Ray
dataset of their paths (``ray.data.from_items``) and maps it with ``map_batches`` over a
fixed pool of ``workers`` actors: each is a ``DetectActor`` that loads the model once
(onnxruntime with as many intra-op threads as the CPUs it reserves) and runs
``serve.predict.detect_files`` on ``batch_size`` images at a time, the same function the
in-process run calls. Results stream back to the driver with ``iter_batches`` as blocks
finish, in any order, and the driver writes them. Per image, only its path goes out and
one JSON string (the record and the EXIF orientation, or why it failed) plus the drawn
PNG, when asked for, come back; decoded pixels never cross the object store. Each chunk
is its own dataset, whose actors start and load the model once: chunks are large
(``--chunk-size``, 10,000 images by default), so that costs little per image.

Images and the model are read by the actors at the paths the driver sees: on a cluster of
several machines they must be on storage every node mounts at the same path.

Checked in Ray 2.60's source (``ray/data/dataset.py``, ``ray/data/read_api.py``):
``map_batches(concurrency=...)`` is deprecated in favour of
``compute=ActorPoolStrategy(size=n)``; a callable class runs in actors, built with
``fn_constructor_kwargs``; ``batch_format="numpy"`` gives dicts of numpy arrays;
``udf_modifying_row_count=False`` declares one output row per input row; ``from_items``
holds its rows in the object store; blocks come back unordered
(``ExecutionOptions.preserve_order`` defaults to False). ``import ray.data`` imports
pandas and pyarrow, not torch; Ray is imported inside functions only, so this module
imports without Ray (``tests/serve/test_no_torch.py`` imports every serve module).

Joining (``ray_cluster``): ``local`` starts a cluster on this machine for the run and
shuts it down after; ``auto``, ``HOST:PORT`` and ``ray://HOST:PORT`` join a running one
through ``serve.ray_cluster.connect``, which first opens a TCP connection to the address,
because ``ray.init`` retries for minutes where nothing answers.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from prodet.serve.image_source import ImageInput
from prodet.serve.model_runner import ModelRunner
from prodet.serve.postprocess import DetectionFilter
from prodet.serve.predict import ImageFailure, ImageOutcome, ImagePrediction, detect_files

logger = logging.getLogger(__name__)

CLUSTER_EXTRA = "pip install 'prodet[cluster]'"


class ClusterError(RuntimeError):
    """Ray cannot be used: not installed, or the cluster cannot be joined; says which."""


class RayUnavailableError(ClusterError):
    """Ray is not installed; the message names the extra that installs it."""


class RayRunError(RuntimeError):
    """Ray Data failed (an actor died, a node was lost); the message says how."""


def require_ray() -> None:
    """Import Ray Data, or say how to install it.

    Raises:
        RayUnavailableError: Ray (with Ray Data) cannot be imported.
    """
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(
            f"--ray-address needs Ray Data, which cannot be imported here ({exc}); install "
            f"the cluster extra: {CLUSTER_EXTRA}"
        ) from None


@contextmanager
def ray_cluster(address: str, *, cpus_needed: float) -> Iterator[None]:
    """Join the Ray cluster at ``address`` (``local``: start one) for the ``with`` block.

    Args:
        address: ``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``.
        cpus_needed: what the actor pool reserves: a local cluster with fewer CPUs is
            refused (some actors could never start); on a joined cluster, which may
            grow, a warning is logged.

    Raises:
        RayUnavailableError: Ray is not installed.
        ClusterError: naming ``address``, when it cannot be reached or joined, or a local
            cluster is too small.
    """
    require_ray()
    import ray
    import ray.data

    from prodet.serve.ray_cluster import RayClusterError, connect

    try:
        connect(None if address == "local" else address)
    except RayClusterError as exc:
        raise ClusterError(str(exc)) from None
    try:
        have = float(ray.cluster_resources().get("CPU", 0.0))
        if cpus_needed > have + 1e-9:
            message = (
                f"the actors reserve {cpus_needed:g} CPUs (--workers x --cpus-per-worker); "
                f"the Ray cluster at {address} has {have:g}"
            )
            if address == "local":
                raise ClusterError(message + ": ask for fewer")
            logger.warning("%s: some actors wait until the cluster grows", message)
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours is tqdm's
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        yield
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class ActorOptions:
    """What each ``DetectActor`` is built with (pickled to the actors)."""

    model: str
    provider: str
    intra_op_threads: int
    keep: dict[str, Any]
    batch_size: int
    max_pixels: int
    fast_jpeg: bool
    draw: bool


class DetectActor:
    """A Ray Data actor: one ``ModelRunner``; maps a batch of paths to outcomes."""

    def __init__(self, options: ActorOptions) -> None:
        self.options = options
        self.runner = ModelRunner.load(
            options.model,
            provider=options.provider,
            warmup_batch=options.batch_size,
            intra_op_threads=options.intra_op_threads,
        )
        self.selection = DetectionFilter.build(self.runner.metadata, **options.keep)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"row", "path"}`` columns in; ``{"row", "payload", "png"}`` out."""
        o = self.options
        paths = [str(p) for p in batch["path"]]
        outcomes = detect_files(
            self.runner,
            self.selection,
            paths,
            max_pixels=o.max_pixels,
            fast_jpeg=o.fast_jpeg,
            draw=o.draw,
        )
        payloads = np.empty(len(outcomes), dtype=object)
        pngs = np.empty(len(outcomes), dtype=object)
        for i, outcome in enumerate(outcomes):
            payloads[i] = encode_outcome(outcome)
            png = outcome.annotated_png if isinstance(outcome, ImagePrediction) else None
            pngs[i] = png or b""
        return {"row": batch["row"], "payload": payloads, "png": pngs}


def encode_outcome(outcome: ImageOutcome) -> str:
    """One outcome as JSON, without the PNG (it travels as bytes beside it)."""
    if isinstance(outcome, ImageFailure):
        return json.dumps({"error": outcome.reason})
    return json.dumps({"record": outcome.record, "orientation": outcome.orientation})


def decode_outcome(payload: str, png: bytes) -> ImageOutcome:
    """Undo ``encode_outcome``; an empty ``png`` means none."""
    data = json.loads(payload)
    if "error" in data:
        return ImageFailure(data["error"])
    return ImagePrediction(data["record"], int(data["orientation"]), bytes(png) or None)


class RayDetector:
    """Detection on a pool of ``workers`` Ray Data actors of ``cpus_per_worker`` CPUs each.

    Use inside ``ray_cluster``.
    """

    def __init__(self, options: ActorOptions, *, workers: int, cpus_per_worker: float) -> None:
        if workers < 1 or cpus_per_worker <= 0:
            raise ValueError(
                f"need at least one worker with some CPU, got {workers} x {cpus_per_worker:g}"
            )
        self.options = options
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker

    def detect(self, items: Sequence[ImageInput]) -> Iterator[tuple[ImageInput, ImageOutcome]]:
        """The outcomes of ``items``, as the actors finish them.

        Raises:
            RayRunError: Ray Data failed.
        """
        if not items:
            return
        import ray
        import ray.data

        # Absolute paths: the actors' working folder is not the driver's.
        rows = [{"row": i, "path": os.path.abspath(item.path)} for i, item in enumerate(items)]
        dataset = ray.data.from_items(rows).map_batches(
            DetectActor,
            fn_constructor_kwargs={"options": self.options},
            batch_size=self.options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus_per_worker,
            batch_format="numpy",
            udf_modifying_row_count=False,
        )
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for row, payload, png in zip(
                    batch["row"], batch["payload"], batch["png"], strict=True
                ):
                    item = items[int(row)]
                    outcome = decode_outcome(str(payload), png)
                    if isinstance(outcome, ImagePrediction):
                        outcome.record["image"] = item.path  # as the in-process run names it
                    yield item, outcome
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RayRunError(f"Ray Data failed: {first}") from exc
