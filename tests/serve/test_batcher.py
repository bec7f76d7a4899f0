"""The micro-batcher: gathering, limits, backpressure, timeouts, runner grouping."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

import numpy as np
import pytest

from prodet.export.onnx_contract import Detections
from prodet.serve.batcher import InferenceTimeoutError, MicroBatcher, QueueFullError
from prodet.serve.model_runner import ModelRunner


class RecordingRunner:
    """Answers each image with one box whose score is the image's first value."""

    def __init__(self, name: str = "a", delay: threading.Event | None = None) -> None:
        self.name = name
        self.batches: list[int] = []
        self.gate = delay
        self.entered = threading.Event()

    def run(self, images: np.ndarray) -> list[Detections]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        self.batches.append(len(images))
        return [
            Detections(
                np.zeros((1, 4), np.float32),
                np.float32([image.flat[0]]),
                np.int64([1]),
            )
            for image in images
        ]


def _runner(fake: RecordingRunner) -> ModelRunner:
    return cast(ModelRunner, fake)


def _image(value: float) -> np.ndarray:
    return np.full((3, 4, 4), value, dtype=np.float32)


def _batcher(**kwargs: Any) -> MicroBatcher:
    values: dict[str, Any] = {"max_batch": 4, "max_wait_ms": 50, "max_queue": 16, "timeout_s": 5}
    values.update(kwargs)
    return MicroBatcher(**values)


def test_concurrent_requests_share_batches_and_get_their_own_answers() -> None:
    fake = RecordingRunner()
    seen: list[int] = []

    async def scenario() -> list[float]:
        batcher = _batcher(on_batch=lambda size, seconds: seen.append(size))
        batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(_runner(fake), [_image(i)]) for i in range(10))
        )
        await batcher.stop()
        return [float(r[0].detections.scores[0]) for r in results]

    assert asyncio.run(scenario()) == [float(i) for i in range(10)]
    assert fake.batches == seen == [4, 4, 2]  # max_batch 4, the rest after max_wait


def test_a_lone_request_waits_at_most_max_wait() -> None:
    fake = RecordingRunner()

    async def scenario() -> float:
        batcher = _batcher(max_wait_ms=20)
        batcher.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        [result] = await batcher.submit(_runner(fake), [_image(1)])
        await batcher.stop()
        assert result.batch_size == 1
        return loop.time() - start

    assert asyncio.run(scenario()) < 1.0
    assert fake.batches == [1]


def test_full_queue_refuses_immediately() -> None:
    gate = threading.Event()
    fake = RecordingRunner(delay=gate)

    async def scenario() -> None:
        batcher = _batcher(max_batch=2, max_queue=2, max_wait_ms=0)
        batcher.start()
        first = asyncio.create_task(batcher.submit(_runner(fake), [_image(0), _image(1)]))
        await asyncio.to_thread(fake.entered.wait, 5)  # the first batch runs (and blocks)
        second = asyncio.create_task(batcher.submit(_runner(fake), [_image(2), _image(3)]))
        await asyncio.sleep(0)  # the second request is queued: the queue is full
        with pytest.raises(QueueFullError):
            await batcher.submit(_runner(fake), [_image(4)])
        gate.set()
        assert len(await first) == len(await second) == 2
        await batcher.stop()

    asyncio.run(scenario())


def test_timeout_skips_the_abandoned_images() -> None:
    gate = threading.Event()
    fake = RecordingRunner(delay=gate)

    async def scenario() -> None:
        batcher = _batcher(max_batch=1, max_queue=4, max_wait_ms=0, timeout_s=0.1)
        batcher.start()
        blocked = asyncio.create_task(batcher.submit(_runner(fake), [_image(0)]))
        await asyncio.to_thread(fake.entered.wait, 5)
        with pytest.raises(InferenceTimeoutError):
            await batcher.submit(_runner(fake), [_image(1)])
        gate.set()
        with pytest.raises(InferenceTimeoutError):
            await blocked
        for _ in range(200):  # the worker drops the abandoned image without running it
            if batcher.depth == 0:
                break
            await asyncio.sleep(0.01)
        assert batcher.depth == 0
        await batcher.stop()

    asyncio.run(scenario())
    assert fake.batches == [1]  # the timed-out second image never ran


def test_images_of_different_runners_are_never_mixed() -> None:
    old, new = RecordingRunner("old"), RecordingRunner("new")

    async def scenario() -> None:
        batcher = _batcher(max_batch=8, max_wait_ms=30)
        batcher.start()
        await asyncio.gather(
            batcher.submit(_runner(old), [_image(0), _image(1)]),
            batcher.submit(_runner(new), [_image(2)]),
            batcher.submit(_runner(old), [_image(3)]),
        )
        await batcher.stop()

    asyncio.run(scenario())
    assert sorted(old.batches) == [1, 2] and new.batches == [1]


def test_runner_failure_reaches_every_waiting_request() -> None:
    class Broken(RecordingRunner):
        def run(self, images: np.ndarray) -> list[Detections]:
            raise RuntimeError("device lost")

    async def scenario() -> None:
        batcher = _batcher()
        batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(_runner(Broken()), [_image(0)]) for _ in range(2)),
            return_exceptions=True,
        )
        assert [(type(r), str(r)) for r in results] == [(RuntimeError, "device lost")] * 2
        # The worker survives a failed batch.
        assert (await batcher.submit(_runner(RecordingRunner()), [_image(5)]))[0].batch_size == 1
        await batcher.stop()

    asyncio.run(scenario())


def test_streams_run_batches_at_the_same_time() -> None:
    """With two streams a second batch starts while the first is still running."""
    gate = threading.Event()
    fake = RecordingRunner(delay=gate)
    active = 0
    peak = 0
    lock = threading.Lock()
    original = fake.run

    def counting_run(images: np.ndarray) -> list[Detections]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 2:
                gate.set()  # both streams are inside run(): let them finish
        try:
            return original(images)
        finally:
            with lock:
                active -= 1

    fake.run = counting_run  # type: ignore[method-assign]

    async def scenario() -> list[list[float]]:
        batcher = _batcher(max_batch=2, max_wait_ms=1, streams=2)
        batcher.start()
        requests = [batcher.submit(_runner(fake), [_image(v)]) for v in range(4)]
        results = await asyncio.gather(*requests)
        await batcher.stop()
        return [[float(r.detections.scores[0]) for r in result] for result in results]

    assert asyncio.run(scenario()) == [[0.0], [1.0], [2.0], [3.0]]
    assert peak == 2
    assert sum(fake.batches) == 4


def test_streams_must_be_positive() -> None:
    with pytest.raises(ValueError, match="streams"):
        _batcher(streams=0)
