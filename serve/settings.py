"""The service's settings: one validated, frozen object built at start-up.

Every field can be set by an environment variable named ``PRODET_`` plus the field name in
capitals (``PRODET_MODEL``, ``PRODET_MAX_BATCH``, ``PRODET_API_KEY``, ...); ``prodet serve``
options override the environment. List fields (``cors_origins``) take a comma-separated
string. Unsafe values (a short API key, a queue smaller than one batch) are refused here,
before any model is loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Provider = Literal["auto", "tensorrt", "cuda", "cpu"]
PROVIDERS: tuple[str, ...] = get_args(Provider)

MIN_API_KEY_LENGTH = 16
DEFAULT_MAX_PIXELS = 40_000_000  # largest decoded image (w * h) the service accepts
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

logger = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Configuration of ``prodet serve`` (see the module docstring for the environment)."""

    model_config = SettingsConfigDict(
        env_prefix="PRODET_", frozen=True, extra="forbid", protected_namespaces=()
    )

    model: Path = Field(description="the ONNX model file; reloads read this path and no other")
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one)")
    provider: Provider = Field("auto", description="execution provider to ask onnxruntime for")
    require_gpu: bool = Field(False, description="refuse to start when CUDA did not load")
    max_batch: int = Field(8, ge=1, le=256, description="images per inference batch")
    max_wait_ms: float = Field(5.0, ge=0, le=1000, description="wait to fill a batch")
    max_queue: int = Field(64, ge=1, description="images waiting for inference before 503")
    request_timeout_s: float = Field(30.0, gt=0, description="per-request inference deadline")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 responses")
    api_key: SecretStr | None = Field(None, description="required on /v1/* when set")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS (comma-separated)"
    )
    max_body_bytes: int = Field(20_000_000, ge=1024, description="largest request body")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest decoded image (w * h)")
    fast_jpeg: bool = Field(
        True,
        description="decode JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) the model input "
        "allows; boxes stay in the original's pixels",
    )
    max_batch_images: int = Field(16, ge=1, description="images in one /v1/detect/batch")
    intra_op_threads: int = Field(
        0, ge=0, description="onnxruntime threads per batch (0: the cores divided among streams)"
    )
    inference_streams: int = Field(
        0,
        ge=0,
        le=16,
        description="batches run at the same time on the shared session (0: one per core up "
        "to 4 on the CPU, 1 on a GPU)",
    )
    ort_spinning: bool = Field(
        True, description="onnxruntime threads spin between runs (off frees cores for decoding)"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="log verbosity"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"api_key must have at least {MIN_API_KEY_LENGTH} characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_queue < self.max_batch:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be at least max_batch ({self.max_batch}), "
                "or no batch could ever fill"
            )
        if self.max_queue < self.max_batch_images:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be at least max_batch_images "
                f"({self.max_batch_images}), or the largest batch request is always refused"
            )
        return self

    def warn_if_exposed(self) -> None:
        """Log a warning when the service listens beyond loopback without an API key."""
        if self.host not in _LOOPBACK_HOSTS and self.api_key is None:
            logger.warning(
                "listening on %s without an API key: anyone who can reach this port can run "
                "detections and reload the model; set --api-key or PRODET_API_KEY",
                self.host,
            )
