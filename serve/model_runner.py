"""One loaded, checked and warmed-up ONNX model, shared by every request.

``ModelRunner.load`` reads the file once (its sha256 is the model's version), picks the
execution providers, checks the graph and metadata against Contract 3, and runs a warm-up
batch whose outputs are checked too, so a model that loads but answers nonsense is refused.
onnxruntime's ``InferenceSession.run`` is thread-safe, so one runner serves all threads.

Providers: ``cpu``; ``cuda`` (CUDA, then CPU); ``tensorrt`` (TensorRT, then CUDA, then CPU);
``auto`` asks for CUDA when this onnxruntime build has it, else CPU (TensorRT only when asked
for by name, because building its engines takes minutes). onnxruntime falls back to the CPU
silently when CUDA fails to load; the runner reports the providers actually active, and
``require_gpu`` turns that fallback into an error.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from prodet.export.onnx_contract import (
    INPUT_NAME,
    OUTPUT_NAMES,
    Detections,
    ModelContractError,
    ModelMetadata,
    check_session,
    unpad,
)

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = frozenset({CUDA, TENSORRT})
_REQUESTS = {
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
    "auto": (CUDA, CPU),
}


class ModelLoadError(ValueError):
    """The model file cannot be served (unreadable, breaks the contract, or no GPU)."""


def requested_providers(provider: str) -> list[str]:
    """The provider list to give onnxruntime for ``provider`` (``auto|tensorrt|cuda|cpu``).

    Providers this onnxruntime build lacks are left out. CUDA's libraries from pip
    packages (``nvidia-*``) are preloaded first so that onnxruntime finds them.
    """
    if provider not in _REQUESTS:
        raise ValueError(f"provider must be one of {', '.join(_REQUESTS)}, got {provider!r}")
    available = set(ort.get_available_providers())
    wanted = [name for name in _REQUESTS[provider] if name in available]
    if any(name in GPU_PROVIDERS for name in wanted):
        _preload_cuda_libraries()
    return wanted or [CPU]


def _preload_cuda_libraries() -> None:
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a missing library must not stop a CPU fallback
        logger.warning("onnxruntime.preload_dlls() failed: %s", exc)


class ModelRunner:
    """A checked, warmed-up ONNX detector (build with ``ModelRunner.load``)."""

    def __init__(
        self, session: ort.InferenceSession, metadata: ModelMetadata, path: Path, sha256: str
    ) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path
        self.sha256 = sha256
        self.model_id = path.stem
        self.version = sha256[:12]
        self.providers: tuple[str, ...] = tuple(session.get_providers())
        self.warmup_ms = 0.0
        # onnxruntime's intra-op threads as the session was built (0: its default).
        self.intra_op_threads = session.get_session_options().intra_op_num_threads

    @property
    def provider(self) -> str:
        """The execution provider running the graph (the first active one)."""
        return self.providers[0]

    @property
    def on_gpu(self) -> bool:
        """Whether a GPU provider (CUDA or TensorRT) is active."""
        return self.provider in GPU_PROVIDERS

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        provider: str = "auto",
        require_gpu: bool = False,
        intra_op_threads: int = 0,
        spinning: bool = True,
        warmup_batch: int = 1,
    ) -> ModelRunner:
        """Load, check and warm up the model at ``path``.

        Args:
            path: the ``.onnx`` file.
            provider: ``auto``, ``tensorrt``, ``cuda`` or ``cpu``.
            require_gpu: fail unless CUDA or TensorRT is active after loading.
            intra_op_threads: onnxruntime's intra-op thread count (0: its default).
            spinning: let idle intra-op threads spin-wait for work (onnxruntime's default);
                off, they sleep and leave the cores to image decoding between runs.
            warmup_batch: the largest batch size to warm up with (1 is always run too).

        Raises:
            ModelLoadError: the file is missing, unreadable, breaks Contract 3, or
                ``require_gpu`` is set and no GPU provider loaded.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot read model file {path}: {exc.strerror or exc}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = requested_providers(provider)
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"{path} is not a loadable ONNX model: {exc}") from None
        try:
            metadata = check_session(session)
        except ModelContractError as exc:
            raise ModelLoadError(f"{path}: {exc}") from None
        runner = cls(session, metadata, path, hashlib.sha256(data).hexdigest())
        if require_gpu and not runner.on_gpu:
            raise ModelLoadError(
                f"--require-gpu: asked for {providers} but onnxruntime is running on "
                f"{list(runner.providers)}; check the NVIDIA driver and that the CUDA and cuDNN "
                "versions this onnxruntime-gpu was built for are installed (pip install "
                "'onnxruntime-gpu[cuda,cudnn]'); onnxruntime's log above says what failed"
            )
        if provider != "cpu" and not runner.on_gpu:
            logger.warning("asked for %s; running on %s", providers, list(runner.providers))
        runner.warm_up(max(1, warmup_batch))
        return runner

    def warm_up(self, batch: int) -> None:
        """Run batches of 1 and ``batch`` mean-colour images and check the outputs.

        Raises:
            ModelLoadError: the model failed or returned outputs that break the contract.
        """
        size = self.metadata.input_size
        start = time.perf_counter()
        for n in sorted({1, batch}):
            try:
                self.run(np.zeros((n, 3, size, size), dtype=np.float32))
            except Exception as exc:
                raise ModelLoadError(
                    f"{self.path}: warm-up with {n} image(s) failed: {exc}"
                ) from None
        self.warmup_ms = (time.perf_counter() - start) * 1000

    def run(self, images: np.ndarray) -> list[Detections]:
        """Detect objects in a batch of pre-processed images.

        Args:
            images: float32 ``[N, 3, S, S]``, normalised per the model's metadata.

        Returns:
            One ``Detections`` per image, in order (boxes in model-input pixels).

        Raises:
            ModelContractError: the outputs break the contract.
        """
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return unpad(
            outputs,
            len(images),
            detections_per_img=self.metadata.detections_per_img,
            num_classes=len(self.metadata.classes),
        )
