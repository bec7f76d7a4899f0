"""Dynamic micro-batching: concurrent requests share one ``session.run``.

Requests put pre-processed images on a bounded queue and await their own result. One
worker task takes the first waiting image, waits up to ``max_wait_ms`` for more (never past
``max_batch``), runs the batch in a thread (``session.run`` releases the GIL and is
thread-safe) and answers each image's future. While a batch runs, the next one fills.
With ``streams > 1`` that many batches run at once on the shared session (useful with
fewer onnxruntime threads per run than cores: one run's serial parts overlap another's).

Backpressure: a request whose images do not fit in the queue is refused at once
(``QueueFullError``, the service's 503 with Retry-After) instead of waiting behind an
unbounded backlog; a request still unanswered after ``timeout_s`` gets
``InferenceTimeoutError`` and its queued images are skipped.

Each image carries the ``ModelRunner`` it was pre-processed for, and a batch is run per
runner, so images queued before a hot reload are answered by the model they were sized
for while new requests go to the new one.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from prodet.export.onnx_contract import Detections
from prodet.serve.model_runner import ModelRunner


class QueueFullError(Exception):
    """The queue cannot take the request's images now; retry later."""


class InferenceTimeoutError(Exception):
    """The request waited longer than the per-request timeout."""


class BatcherClosedError(Exception):
    """The service is shutting down."""


@dataclass(frozen=True)
class BatchResult:
    """One image's answer and what it cost: milliseconds queued and in ``session.run``."""

    detections: Detections
    queue_ms: float
    inference_ms: float
    batch_size: int


@dataclass(frozen=True)
class _Item:
    tensor: np.ndarray
    runner: ModelRunner
    future: asyncio.Future[BatchResult]
    enqueued: float


class MicroBatcher:
    """Gathers images into batches of at most ``max_batch`` (see the module docstring).

    Args:
        max_batch: most images per ``session.run``.
        max_wait_ms: longest a batch waits to fill after its first image arrived.
        max_queue: most images waiting; more are refused with ``QueueFullError``.
        timeout_s: longest a request waits for its answer.
        on_batch: called with ``(batch_size, seconds)`` after each run (metrics).
        on_depth: called with the number of waiting images whenever it changes (metrics).
        streams: batches that may run at the same time.
    """

    def __init__(
        self,
        *,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        timeout_s: float,
        on_batch: Callable[[int, float], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        streams: int = 1,
    ) -> None:
        if max_batch < 1 or max_queue < max_batch:
            raise ValueError(f"need 1 <= max_batch <= max_queue, got {max_batch}, {max_queue}")
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._on_batch = on_batch or (lambda size, seconds: None)
        self._on_depth = on_depth or (lambda depth: None)
        self._pending: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="prodet-infer")
        self._slots = asyncio.Semaphore(streams)
        self._running: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Images waiting for a batch."""
        return len(self._pending)

    @property
    def running(self) -> bool:
        """Whether the worker is accepting images."""
        return self._worker is not None and not self._worker.done() and not self._closed

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._collect_forever())

    async def stop(self) -> None:
        """Refuse new images, fail the waiting ones, let the running batch finish."""
        self._closed = True
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(BatcherClosedError("the service is shutting down"))
        self._on_depth(0)
        self._wakeup.set()
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
        await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, runner: ModelRunner, tensors: Sequence[np.ndarray]) -> list[BatchResult]:
        """Queue one request's images and wait for their results, in order.

        Raises:
            QueueFullError: fewer than ``len(tensors)`` free places in the queue.
            InferenceTimeoutError: no answer within ``timeout_s``.
            BatcherClosedError: the service is stopping.
        """
        if self._closed:
            raise BatcherClosedError("the service is shutting down")
        if len(self._pending) + len(tensors) > self.max_queue:
            raise QueueFullError(
                f"{len(self._pending)} images are waiting (limit {self.max_queue}); retry later"
            )
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        items = [_Item(t, runner, loop.create_future(), now) for t in tensors]
        self._pending.extend(items)
        self._on_depth(len(self._pending))
        self._wakeup.set()
        try:
            return list(
                await asyncio.wait_for(
                    asyncio.gather(*(item.future for item in items)), self.timeout_s
                )
            )
        except TimeoutError:
            raise InferenceTimeoutError(
                f"no result within {self.timeout_s:g} s; the service is overloaded, retry later"
            ) from None

    async def _collect_forever(self) -> None:
        while not self._closed:
            # A free stream first: while all are busy, the next batch keeps filling.
            await self._slots.acquire()
            try:
                batch = await self._collect_batch()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_and_release(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_and_release(self, batch: list[_Item]) -> None:
        try:
            await self._run_batch(batch)
        finally:
            self._slots.release()

    async def _collect_batch(self) -> list[_Item]:
        """Wait for a first image, then up to ``max_wait_ms`` for a full batch."""
        loop = asyncio.get_running_loop()
        while not self._pending:
            if self._closed:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < self.max_batch and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Item] = []
        while self._pending and len(batch) < self.max_batch:
            item = self._pending.popleft()
            if not item.future.done():  # skip images of timed-out requests
                batch.append(item)
        self._on_depth(len(self._pending))
        return batch

    async def _run_batch(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        for _, group_iter in itertools.groupby(batch, key=lambda item: id(item.runner)):
            group = list(group_iter)
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, group[0].runner.run, np.stack([i.tensor for i in group])
                )
            except Exception as exc:
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            self._on_batch(len(group), seconds)
            for item, result in zip(group, results, strict=True):
                if not item.future.done():
                    item.future.set_result(
                        BatchResult(
                            result, (started - item.enqueued) * 1000, seconds * 1000, len(group)
                        )
                    )
