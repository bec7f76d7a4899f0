"""The running service: the current model, the batcher, admission control and hot reload.

``Service.runner`` is replaced by one assignment on reload; a request reads it once and
uses that runner for pre-processing, inference and post-processing, so a swap never mixes
two models in one answer and in-flight requests finish on the model they started with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from prodet.annotations.image_decode import ImageDecodeError
from prodet.serve.batcher import MicroBatcher, QueueFullError
from prodet.serve.errors import ApiError
from prodet.serve.metrics import ServiceMetrics
from prodet.serve.model_runner import ModelLoadError, ModelRunner
from prodet.serve.parallelism import Parallelism, plan_parallelism, usable_cores
from prodet.serve.postprocess import DetectionFilter, select_detections
from prodet.serve.preprocess import PreparedImage, prepare_image
from prodet.serve.settings import Settings

logger = logging.getLogger(__name__)


def parallelism(settings: Settings, *, on_gpu: bool = False) -> Parallelism:
    """The streams and onnxruntime threads ``settings`` ask for, with 0s chosen for this
    machine's cores (``serve.parallelism``)."""
    return plan_parallelism(
        usable_cores(),
        streams=settings.inference_streams,
        intra_op_threads=settings.intra_op_threads,
        on_gpu=on_gpu,
    )


def load_runner(settings: Settings) -> ModelRunner:
    """Load, check and warm up the model at ``settings.model`` as the settings say.

    Raises:
        ModelLoadError: the file cannot be served.
    """
    return ModelRunner.load(
        settings.model,
        provider=settings.provider,
        require_gpu=settings.require_gpu,
        # Idle onnxruntime threads spin-wait for work unless the settings leave the cores
        # to image decoding between runs.
        spinning=settings.ort_spinning,
        intra_op_threads=parallelism(settings).intra_op_threads,
        warmup_batch=settings.max_batch,
    )


def model_info(runner: ModelRunner, last_reload_error: str | None = None) -> dict[str, Any]:
    """The ``GET /v1/model`` body for ``runner``."""
    meta = runner.metadata
    return {
        "model_id": runner.model_id,
        "model_version": runner.version,
        "sha256": runner.sha256,
        "classes": list(meta.classes),
        "input_size": meta.input_size,
        "resize_mode": meta.resize_mode,
        "mean": list(meta.mean),
        "std": list(meta.std),
        "head": meta.head,
        "backbone": meta.backbone,
        "val_map": meta.val_map,
        "precision": meta.precision,
        "detections_per_img": meta.detections_per_img,
        "score_thresh": meta.score_thresh,
        "dataset_hash": meta.dataset_hash,
        "exporter": meta.exporter,
        "opset": meta.opset,
        "exported_at": meta.exported_at,
        "provider": runner.provider,
        "providers": list(runner.providers),
        "warmup_ms": round(runner.warmup_ms, 3),
        "last_reload_error": last_reload_error,
    }


class Service:
    """Everything a request needs, shared by all requests of one app."""

    def __init__(self, settings: Settings, runner: ModelRunner, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.runner = runner
        self.metrics = metrics
        self.parallelism = parallelism(settings, on_gpu=runner.on_gpu)
        self.batcher = MicroBatcher(
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            timeout_s=settings.request_timeout_s,
            on_batch=metrics.observe_batch,
            on_depth=metrics.queue_depth.set,
            streams=self.parallelism.streams,
        )
        self.last_reload_error: str | None = None
        self._admitted = 0
        self._reload_lock = asyncio.Lock()
        metrics.set_model(runner)

    @property
    def ready(self) -> bool:
        """Whether a warmed-up model is loaded and the batcher is running."""
        return self.batcher.running

    async def detect(
        self, payloads: Sequence[bytes], names: Sequence[str], keep: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Detect objects in each encoded image; one ``DetectResponse`` dict per image.

        Args:
            payloads: the encoded images.
            names: a name per image for error messages (file name or index).
            keep: ``DetectionFilter.build`` keyword arguments from the query.

        Raises:
            ApiError: 422 for a bad filter; QueueFullError when over capacity; ImageDecodeError
                subclasses (prefixed with the image's name) for unusable images.
        """
        started = time.perf_counter()
        runner = self.runner
        try:
            selection = DetectionFilter.build(runner.metadata, **keep)
        except ValueError as exc:
            raise ApiError(422, "invalid_parameter", str(exc)) from None
        count = len(payloads)
        # Admission covers decoding too, so a burst of uploads cannot pile up in memory.
        if self._admitted + count > self.settings.max_queue:
            raise QueueFullError(
                f"{self._admitted} images are in progress (limit {self.settings.max_queue}); "
                "retry later"
            )
        self._admitted += count
        try:
            prepared = await asyncio.gather(
                *(
                    self._prepare(data, name, runner)
                    for data, name in zip(payloads, names, strict=True)
                )
            )
            answers = await self.batcher.submit(runner, [p.tensor for p in prepared])
        finally:
            self._admitted -= count
        total_ms = (time.perf_counter() - started) * 1000
        return [
            {
                "model_id": runner.model_id,
                "model_version": runner.version,
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "detections": [
                    d.as_dict()
                    for d in select_detections(answer.detections, image, runner.metadata, selection)
                ],
                "timings": {
                    "decode_ms": round(image.decode_ms, 3),
                    "queue_ms": round(answer.queue_ms, 3),
                    "inference_ms": round(answer.inference_ms, 3),
                    "total_ms": round(total_ms, 3),
                    "batch_size": answer.batch_size,
                },
            }
            for image, answer in zip(prepared, answers, strict=True)
        ]

    async def _prepare(self, data: bytes, name: str, runner: ModelRunner) -> PreparedImage:
        try:
            return await asyncio.to_thread(
                prepare_image,
                data,
                runner.metadata,
                max_pixels=self.settings.max_pixels,
                fast_jpeg=self.settings.fast_jpeg,
            )
        except ImageDecodeError as exc:
            raise type(exc)(f"{name[:100]}: {exc}") from None

    async def reload(self) -> dict[str, Any]:
        """Load the configured model file again and swap it in once checked and warm.

        Raises:
            ApiError: 422 when the new file cannot be served; the old model keeps serving.
        """
        async with self._reload_lock:
            old = self.runner
            try:
                new = await asyncio.to_thread(load_runner, self.settings)
            except ModelLoadError as exc:
                self.metrics.reloads.labels("failed").inc()
                self.last_reload_error = str(exc)
                logger.error("reload failed, still serving version %s: %s", old.version, exc)
                raise ApiError(
                    422,
                    "reload_failed",
                    f"{exc}; still serving {old.model_id} version {old.version}",
                ) from None
            self.runner = new
            self.last_reload_error = None
            self.metrics.reloads.labels("ok").inc()
            self.metrics.set_model(new)
            logger.info("reloaded %s: version %s -> %s", new.path, old.version, new.version)
            return {"status": "reloaded", "previous_version": old.version, "model": model_info(new)}
