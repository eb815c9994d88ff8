"""The same app on Ray Serve: ``create_app`` as a FastAPI ingress deployment, one replica per CPU slice.

Each replica is one ``create_app`` (its own registry, admission gate, caches and export worker) given
``replica_cpus`` cores: the gate's slots and the ONNX Runtime threads fill exactly those
(``Settings.cpus``). Ray routes at most ``max_ongoing_requests`` = the gate's slots + its queue to a
replica, so it never sends one more than its gate would hold; the gate still refuses by estimated wait
(503 + Retry-After). Past that, requests wait in Ray's own queue (``max_queued_requests``, the gate's
queue length), and beyond it Ray answers 503 with ``Retry-After`` (``BackpressureConfig``). With
``max_replicas`` above ``replicas`` the deployment scales on ongoing requests (the target: every slot
busy, nothing queued). Every answer carries ``X-Resviz-Replica`` (the replica's id).

All replicas share the image store (``data_dir``: one directory on storage every node mounts) and the
models folder; an image uploaded through one replica is analysed through another.

``build_app`` is the application builder of ``serve_config.yaml`` (``serve run`` / ``serve deploy``, and
KubeRay's RayService); ``serve_locally`` is ``resviz serve --engine ray``. Needs the ``cluster`` extra.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.config import AutoscalingConfig, BackpressureConfig

from app.config import Settings, cpu_count, graph_threads
from app.main import create_app

log = logging.getLogger("resviz.cluster")
APP_NAME = "resviz"
DEPLOYMENT = "Resviz"
REPLICA_HEADER = "x-resviz-replica"
OBJECT_STORE_BYTES = 128 * 1024 * 1024  # requests and answers pass inline or through here: little is needed


@dataclass
class ClusterOptions:
    """What ``serve_config.yaml``'s ``args`` and ``resviz serve --engine ray`` set."""

    replicas: int = 2  # replicas to start with (the minimum when autoscaling)
    max_replicas: int = 0  # above ``replicas``: autoscale up to this many on ongoing requests
    replica_cpus: int = 1  # Ray's num_cpus per replica: its graph slots x ORT threads
    settings: dict[str, Any] = field(default_factory=dict)  # Settings for every replica (else RESVIZ_* of its env)

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.replica_cpus < 1:
            raise ValueError("replicas and replica_cpus must be at least 1")
        if self.max_replicas and self.max_replicas < self.replicas:
            raise ValueError("max_replicas must be at least replicas")


def replica_settings(options: ClusterOptions) -> Settings:
    """The settings one replica runs with: the given ones, its CPU slice, and RESVIZ_* from its environment."""
    return Settings(**{**options.settings, "cpus": options.replica_cpus})


def deployment_options(options: ClusterOptions) -> dict[str, Any]:
    """Ray Serve options matching each replica's admission gate (see the module docstring)."""
    settings = replica_settings(options)
    slots, _ = graph_threads(settings)
    opts: dict[str, Any] = {
        "name": DEPLOYMENT,
        "max_ongoing_requests": slots + settings.queue_length,
        "max_queued_requests": settings.queue_length,
        "backpressure_config": BackpressureConfig(
            status_code=503, retry_after_s=max(1, math.ceil(settings.max_queue_wait_s))
        ),
        "ray_actor_options": {"num_cpus": options.replica_cpus},
        "health_check_period_s": 10,
        "graceful_shutdown_timeout_s": 20,
    }
    if options.max_replicas > options.replicas:
        opts["autoscaling_config"] = AutoscalingConfig(
            min_replicas=options.replicas,
            initial_replicas=options.replicas,
            max_replicas=options.max_replicas,
            target_ongoing_requests=slots,  # every slot busy and nothing waiting: enough replicas
            upscale_delay_s=5,  # a lecture arrives in seconds
            downscale_delay_s=300,  # and comes back after the next slide
        )
    else:
        opts["num_replicas"] = options.replicas
    return opts


class ReplicaHeaderMiddleware:
    """Adds ``X-Resviz-Replica: <id>`` to every HTTP answer."""

    def __init__(self, app: Callable, name: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), name.encode())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Pass the request through, adding the header to the response's start."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


@serve.ingress()
class Resviz:
    """One replica: ``create_app`` on this replica's settings, built when Ray starts the replica."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The replica's ASGI app (Ray runs its lifespan: registry, gate, export worker)."""
        replica = serve.get_replica_context().replica_tag
        app = create_app(self.settings)
        app.add_middleware(ReplicaHeaderMiddleware, name=replica)
        slots, threads = graph_threads(self.settings)
        log.info("replica %s: %d graph slots x %d ORT threads", replica, slots, threads)
        return app


def build_app(args: dict[str, Any]) -> serve.Application:
    """The Serve application (``import_path: app.cluster:build_app`` in serve_config.yaml; ``args``: ClusterOptions)."""
    options = ClusterOptions(**(args or {}))
    settings = {**options.settings, "cpus": options.replica_cpus}
    return serve.deployment(Resviz, **deployment_options(options)).bind(settings)


def serve_locally(
    options: ClusterOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Start a Ray on this machine, deploy the app on ``host:port`` and serve until SIGTERM/SIGINT or ``stop``.

    Always a new Ray (never one found running), bound to 127.0.0.1 when ``host`` is a loopback address, with
    no dashboard and no usage reporting; it is shut down on the way out.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    need = options.replicas * options.replica_cpus
    cores = cpu_count()
    if need > cores:
        raise ValueError(
            f"{options.replicas} replicas x {options.replica_cpus} CPUs need {need} cores; this machine has {cores}"
        )
    loopback = host in ("127.0.0.1", "localhost", "::1")
    temp = tempfile.mkdtemp(prefix="resviz-ray-")
    stop = stop or threading.Event()
    ray.init(
        address="local",
        num_cpus=cores,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        log_to_driver=False,
        _temp_dir=temp,
        **({"_node_ip_address": "127.0.0.1"} if loopback else {}),
    )
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        serve.run(build_app(_as_args(options)), name=APP_NAME, route_prefix="/")
        if on_ready is not None:
            on_ready(f"http://{host}:{port}")
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def _as_args(options: ClusterOptions) -> dict[str, Any]:
    return {
        "replicas": options.replicas,
        "max_replicas": options.max_replicas,
        "replica_cpus": options.replica_cpus,
        "settings": {k: str(v) if hasattr(v, "__fspath__") else v for k, v in options.settings.items()},
    }
