"""Settings, read from RESVIZ_* environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.paths import DEFAULT_MODELS_DIR
from app.specs import DEFAULT_MODELS


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "resviz"


class Settings(BaseSettings):
    """Everything the server can be configured with."""

    model_config = SettingsConfigDict(env_prefix="RESVIZ_")

    models_dir: Path = DEFAULT_MODELS_DIR  # exported graphs + manifests (a build cache)
    data_dir: Path = Field(default_factory=_default_data_dir)  # stored images (survive restarts)
    default_models: tuple[str, ...] = DEFAULT_MODELS  # exported in the background once the server answers
    export_on_start: bool = True  # queue missing default models at start-up (the export worker does them)
    export_on_demand: bool = True  # a request for a model not exported yet queues its export (else a 404)
    export_timeout_s: float = 1800.0  # one export subprocess is killed past this
    start_model: str = "resnet20"  # the start page's model: its analysis graphs are exported first
    providers: str = "auto"  # "auto": CUDA where onnxruntime sees a GPU, else CPU; or a comma list
    intra_op_threads: int = 0  # ORT threads per session; 0 lets ORT pick (one per core)
    max_upload_bytes: int = 10 * 1024 * 1024  # per request body, refused before buffering
    max_image_pixels: int = 40_000_000  # larger images are refused from their header
    max_batch: int = 8  # images per analysis request
    cache_entries: int = 64  # analysis results kept in the LRU cache
    feature_maps_k: int = 8  # channels per tap shown as thumbnails
    store_max_bytes: int = 512 * 1024 * 1024  # stored-image budget
    embed_frame_ancestors: str = "'self' http://localhost:* http://127.0.0.1:*"  # who may iframe /embed/*
    admin_token: SecretStr | None = None  # operator token for image management over HTTP (off when unset)
    upload_rate_per_minute: float = 20.0  # image uploads per client address, refilled continuously
    upload_burst: int = 10  # uploads a client may make at once before the rate applies
    trusted_origins: tuple[str, ...] = ()  # other origins allowed to POST/PUT/DELETE (besides the server's own)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
