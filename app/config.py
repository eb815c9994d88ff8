"""Settings, read from RESVIZ_* environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
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
    default_models: tuple[str, ...] = DEFAULT_MODELS  # exported before the server starts serving
    export_on_start: bool = True  # export missing default models (in a subprocess) at start-up
    providers: str = "auto"  # "auto": CUDA where onnxruntime sees a GPU, else CPU; or a comma list
    intra_op_threads: int = 0  # ORT threads per session; 0 lets ORT pick (one per core)
    max_upload_bytes: int = 10 * 1024 * 1024  # per request body, refused before buffering
    max_image_pixels: int = 40_000_000  # larger images are refused from their header
    max_batch: int = 8  # images per analysis request
    cache_entries: int = 64  # analysis results kept in the LRU cache
    feature_maps_k: int = 8  # channels per tap shown as thumbnails
    store_max_bytes: int = 512 * 1024 * 1024  # stored-image budget
    # Who may put /embed/* in an iframe: by default any page, whether a deck opened from disk (file:,
    # which '*' does not cover) or one served over http or https. Safe for those pages alone: they are
    # read-only charts (GET, no forms, no login or cookies), so a framing page has nothing to click
    # through; every other page keeps frame-ancestors 'self'. Narrow it to your course site's origins.
    embed_frame_ancestors: str = "'self' file: http: https:"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
