"""Settings, read from RESVIZ_* environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.paths import DEFAULT_MODELS_DIR, user_data_home
from app.specs import DEFAULT_MODELS


def _default_data_dir() -> Path:
    return user_data_home()


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
    cpus: int = 0  # cores this server may use (a container's CPU limit); 0: the affinity mask; split over --workers
    graph_slots: int = 0  # graph runs at once (the admission gate); 0: one per core
    intra_op_threads: int = 0  # ORT threads per session; 0: cores // graph_slots, so the runs fill the cores
    # Models whose layers average at least this many multiply-accumulates (the ImageNet ResNets) get one
    # ORT thread per core instead: a request alone uses every core, and concurrent ones lose nothing, as
    # idle workers sleep rather than spin. Models of small layers (the CIFAR ResNets, however deep) keep
    # ``intra_op_threads``: their many small ops scale badly across cores. 0: the same for every model.
    wide_layer_macs: float = 1e7
    queue_length: int = 128  # requests waiting for a slot; past it (or past max_queue_wait_s) 503 + Retry-After
    max_queue_wait_s: float = 4.0  # refuse at once rather than queue for longer than this (estimated)
    max_upload_bytes: int = 10 * 1024 * 1024  # per request body, refused before buffering
    max_image_pixels: int = 20_000_000  # decoded pixels per image (JPEGs are decoded at reduced scale first)
    max_batch: int = 8  # images per analysis request
    cache_bytes: int = 128 * 1024 * 1024  # finished answers, gzipped (~130 ResNet-50 or ~800 ResNet-20 ones)
    taps_cache_bytes: int = 128 * 1024 * 1024  # full tap tensors kept for feature-map clicks
    body_timeout_s: float = 20.0  # a request body that stalls this long is cut off (408)
    warm_on_start: bool = True  # open the default models' analysis sessions at start-up, beside serving
    header_timeout_s: float = 10.0  # a connection whose request headers take longer is closed
    feature_maps_k: int = 8  # channels per tap shown as thumbnails
    store_max_bytes: int = 512 * 1024 * 1024  # stored-image budget
    # Who may put /embed/* in an iframe: by default any page, whether a deck opened from disk (file:,
    # which '*' does not cover) or one served over http or https. Safe for those pages alone: they are
    # read-only charts (GET, no forms, no login or cookies), so a framing page has nothing to click
    # through; every other page keeps frame-ancestors 'self'. Narrow it to your course site's origins.
    embed_frame_ancestors: str = "'self' file: http: https:"
    admin_token: SecretStr | None = None  # operator token for image management over HTTP (off when unset)
    upload_rate_per_minute: float = 20.0  # image uploads per client address, refilled continuously
    upload_burst: int = 10  # uploads a client may make at once before the rate applies
    trusted_origins: tuple[str, ...] = ()  # other origins allowed to POST/PUT/DELETE (besides the server's own)


def cpu_count() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def graph_threads(settings: Settings) -> tuple[int, int]:
    """(graph slots, ORT intra-op threads per run): slots x threads = the cores unless set explicitly."""
    cores = settings.cpus or cpu_count()
    slots = settings.graph_slots or cores
    threads = settings.intra_op_threads or max(1, cores // slots)
    return slots, threads


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
